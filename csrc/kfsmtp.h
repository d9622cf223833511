/* Symbol visibility, shared by every C file of the core. The module exports
 * one symbol, luaopen_kfsmtp_core (KF_EXPORT); the kf_ functions the files
 * share are hidden (KF_HIDDEN) even where a build, such as luarocks', does
 * not pass -fvisibility=hidden. */
#ifndef KFSMTP_H
#define KFSMTP_H

#if defined(__GNUC__)
#define KF_HIDDEN __attribute__((visibility("hidden")))
#define KF_EXPORT __attribute__((visibility("default")))
#else
#define KF_HIDDEN
#define KF_EXPORT
#endif

#endif
