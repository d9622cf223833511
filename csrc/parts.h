/* The parts of kfsmtp.core, each opened by core.c from one list. A part's
 * kf_open_* (in its *_lua.c) adds the part's functions to the module table
 * on top of the stack, and registers the metatables its objects use. */
#ifndef KFSMTP_PARTS_H
#define KFSMTP_PARTS_H

#include "compat.h"
#include "kfsmtp.h"

KF_HIDDEN int kf_open_validate(lua_State *L); /* check_*, hostname */
KF_HIDDEN int kf_open_message(lua_State *L);  /* compose */
KF_HIDDEN int kf_open_delivery(lua_State *L); /* deliver */
KF_HIDDEN int kf_open_token(lua_State *L);    /* fetch_token */
KF_HIDDEN int kf_open_store(lua_State *L);    /* store_* and the lock object */
KF_HIDDEN int kf_open_password(lua_State *L); /* password_hash, password_verify */
KF_HIDDEN int kf_open_encode(lua_State *L);   /* base64, url_escape */

#endif
