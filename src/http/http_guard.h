/*-------------------------------------------------------------------------
 *
 * http_guard.h
 *		Which URLs and addresses outbox_saga's HTTP requests may reach, and
 *		the setting outbox_saga.http_deny_networks that says so.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_HTTP_GUARD_H
#define OUTBOX_SAGA_HTTP_GUARD_H

/* Longest URL a destination or an http call may have, in bytes. */
#define HTTP_MAX_URL_BYTES		4096

/*
 * Define outbox_saga.http_deny_networks (from _PG_init, before the
 * outbox_saga prefix is reserved).
 */
extern void HttpGuardInit(void);

/*
 * Check a URL: an absolute http:// or https:// URL with a host, no user
 * name or password, no whitespace or control characters, at most
 * HTTP_MAX_URL_BYTES, and - if its host is an IP address - not in
 * outbox_saga.http_deny_networks.  Raises an error (22023) that never
 * quotes the URL.
 */
extern void HttpGuardCheckUrl(const char *url);

/*
 * Bring the parsed copy of outbox_saga.http_deny_networks up to date
 * (call before a batch, outside any curl callback).  Returns the
 * generation of the list now in force: it changes whenever the setting
 * does, so a caller that kept connections made under an older generation
 * knows to drop them.  An unparsable setting denies every address.
 */
extern uint64 HttpGuardRefresh(void);

/*
 * Whether a connection to 'addr' (4 bytes for AF_INET, 16 for AF_INET6)
 * is refused by the list HttpGuardRefresh last parsed; *setting_invalid
 * tells whether it is because the setting cannot be parsed.  No
 * allocation, no error: meant to be called inside libcurl.
 */
extern bool HttpGuardRefusesAddress(int family, const unsigned char *addr,
									bool *setting_invalid);

#endif							/* OUTBOX_SAGA_HTTP_GUARD_H */
