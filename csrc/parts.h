/* The parts of kfsmtp.core, each opened by core.c from one list: a part's
 * *_lua.c exports its functions as one luaL_Reg array, and makes the
 * metatables its objects use when it makes the first object. */
#ifndef KFSMTP_PARTS_H
#define KFSMTP_PARTS_H

#include "compat.h"
#include "kfsmtp.h"

KF_HIDDEN extern const luaL_Reg kf_validate_functions[]; /* check_* */
KF_HIDDEN extern const luaL_Reg kf_message_functions[];  /* compose */
KF_HIDDEN extern const luaL_Reg kf_delivery_functions[]; /* deliver, clock_ms, hostname */
KF_HIDDEN extern const luaL_Reg kf_token_functions[];    /* fetch_token, token_cache_* */
KF_HIDDEN extern const luaL_Reg kf_store_functions[];    /* store_*, lock objects */
KF_HIDDEN extern const luaL_Reg kf_password_functions[]; /* password_hash, password_verify */
KF_HIDDEN extern const luaL_Reg kf_encode_functions[];   /* base64, url_escape */
KF_HIDDEN extern const luaL_Reg kf_secretfile_functions[]; /* read_secret_file */
KF_HIDDEN extern const luaL_Reg kf_sealing_functions[];   /* key_generate, key_id, seal, unseal */
KF_HIDDEN extern const luaL_Reg kf_pgstore_functions[];  /* pg_connect, connection objects */

#endif
