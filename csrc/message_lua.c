/* compose{...} --> message, message_id: the Lua side of message.c. Fields
 * are read through the door; the message is built in a buffer owned by a
 * userdata, so nothing leaks if pushing the result raises. */
#include <time.h>

#include "luafield.h"
#include "message.h"
#include "parts.h"
#include "validate.h"

/* compose{sender_name, sender_account, recipient, host, port, tls_mode, now} */
static int lmsg_compose(lua_State *L) {
    kf_message_in msg;
    char unique[KF_MESSAGE_UNIQUE_SIZE], message_id[400];
    kf_buf *out;
    kf_door in = kf_door_fields(L, "compose", 7);
    msg.sender_name = kf_field_text(&in, "sender_name", KF_MAX_FIELD);
    /* The Message-ID's domain comes from it, into a fixed buffer. */
    msg.sender_account = kf_field_text(&in, "sender_account", KF_MAX_MAILBOX);
    msg.recipient = kf_field_text(&in, "recipient", KF_MAX_FIELD);
    msg.host = kf_field_text(&in, "host", KF_MAX_FIELD);
    msg.port = (long)kf_field_int(&in, "port", 1, KF_MAX_PORT, KF_DEFAULT_PORT);
    msg.tls_mode = (enum kf_tls_mode)kf_field_choice(&in, "tls_mode", kf_tls_mode_names,
                                                     KF_TLS_MODE_COUNT, 1);
    msg.now = (time_t)kf_field_int(&in, "now", 0, KF_MESSAGE_MAX_TIME, (lua_Integer)time(NULL));
    kf_message_unique(unique, sizeof unique);
    msg.unique = unique;
    out = kf_newbuf(L);
    if (kf_compose(&msg, out, message_id, sizeof message_id) != 0)
        return luaL_error(L, "kfsmtp.core.compose: out of memory composing the message");
    lua_pushlstring(L, out->data, out->len);
    lua_pushstring(L, message_id);
    kf_buf_free(out);
    return 2;
}

const luaL_Reg kf_message_functions[] = {
    {"compose", lmsg_compose},
    {NULL, NULL}};
