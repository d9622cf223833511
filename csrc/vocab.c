/* The names of vocab.h's lists, written out once: C reports stages by these
 * names, the door parses tls_mode and quit_after with them, and
 * luaopen_kfsmtp_core exports them to Lua. */
#include "vocab.h"

#define VOCAB_NAME(name, text) text,
const char *const kf_stage_names[KF_STAGE_COUNT] = {KF_STAGE_LIST(VOCAB_NAME)};
const char *const kf_tls_mode_names[KF_TLS_MODE_COUNT] = {KF_TLS_MODE_LIST(VOCAB_NAME)};
const char *const kf_quit_after_names[KF_QUIT_COUNT - 1] = {KF_QUIT_LIST(VOCAB_NAME)};
const char *const kf_sasl_names[KF_SASL_COUNT] = {KF_SASL_LIST(VOCAB_NAME)};
#undef VOCAB_NAME
