/* The one place the version lives: the Lua side reads it from kfsmtp.core,
 * and spec/version_spec.lua checks the rockspecs against it. */
#ifndef KFSMTP_VERSION_H
#define KFSMTP_VERSION_H
#define KFSMTP_VERSION "0.1.0"
#endif
