/*-------------------------------------------------------------------------
 *
 * http_guard.c
 *		Which URLs outbox_saga's HTTP requests (http destinations, saga
 *		http steps) may have, and which addresses they may connect to.
 *
 * URLS are checked when a destination is created or altered, and before
 * every http call (HttpGuardCheckUrl): an absolute http:// or https:// URL
 * with a host and without user name or password
 * ("http://good.example@evil.example/" is refused, credentials belong in
 * the "headers" key, where they are masked; so is any '@' before the path,
 * even of an empty "http://@host/", which libcurl would send as empty
 * Basic credentials), without whitespace, control
 * characters or backslashes, parsed by libcurl's own URL parser so that
 * what is checked is what will be requested.  Error messages never quote
 * the URL: its query string may carry a token.
 *
 * ADDRESSES are checked on every connection the HTTP client opens, after
 * DNS resolution: http_socket.c's CURLOPT_OPENSOCKETFUNCTION callback asks
 * HttpGuardRefusesAddress before it opens a socket.  An address in one of
 * the networks of outbox_saga.http_deny_networks (default: every internal
 * network, HTTP_DEFAULT_DENY_NETWORKS: loopback, private, CGNAT,
 * link-local where cloud metadata services answer, unique-local) is
 * refused before any packet is sent, so a host name that resolves - or is
 * rebound - to such an address is refused too.  0.0.0.0/8 and :: (which
 * connect() takes as this host) are refused whatever the setting says.
 * IPv4 addresses inside IPv6 (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d,
 * NAT64 64:ff9b::a.b.c.d) are checked as IPv4 too.  The client never uses
 * a proxy, so the address checked is always the destination's.  The policy
 * is one for every owner: only a superuser can change the setting
 * (postgresql.conf, reload), e.g. to let webhooks reach an internal
 * network.  A setting that cannot be parsed denies every address (fail
 * closed) and says so once in the server log.
 *
 * This file is a predicate: it calls nothing in the client or its sockets.  The parsed
 * list lives in TopMemoryContext and is replaced (HttpGuardRefresh) only
 * between batches, never while libcurl runs, so HttpGuardRefusesAddress
 * can read it inside libcurl without locks, allocations or errors.  No
 * transaction is needed; nothing is kept across a crash (each process
 * parses the setting again).
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "http/http_guard.h"

/*
 * The default of outbox_saga.http_deny_networks: every internal network
 * (Standard Webhooks: deny internal addresses by default).  Loopback,
 * RFC 1918 private, shared address space (CGNAT), link-local (cloud
 * metadata services), IPv6 loopback, unique-local and link-local.
 */
#define HTTP_DEFAULT_DENY_NETWORKS \
	"127.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10," \
	"169.254.0.0/16,::1/128,fc00::/7,fe80::/10"

/* One network of the deny list. */
typedef struct DenyNetwork
{
	int			family;			/* AF_INET or AF_INET6 */
	int			bits;			/* prefix length */
	unsigned char addr[16];		/* network address, host bits zero */
} DenyNetwork;

/* The setting outbox_saga.http_deny_networks. */
static char *http_deny_networks = NULL;

/* The parsed outbox_saga.http_deny_networks, in TopMemoryContext. */
static uint64 deny_generation = 0;	/* bumped on every re-parse */
static char *deny_source = NULL;	/* the setting it was parsed from */
static DenyNetwork *deny_list = NULL;
static int	deny_count = 0;
static bool deny_invalid = false;	/* unparsable: deny everything */

/* ------------------------------------------------------------------------
 * The deny list
 * ------------------------------------------------------------------------
 */

/*
 * parse_network
 *		Parse "address" or "address/bits" into *net.  Returns false if it is
 *		neither an IPv4 nor an IPv6 network.
 */
static bool
parse_network(const char *item, DenyNetwork *net)
{
	char		buf[INET6_ADDRSTRLEN + 8];
	char	   *slash;
	int			max_bits;
	int			i;

	if (strlen(item) >= sizeof(buf))
		return false;
	strcpy(buf, item);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';

	memset(net, 0, sizeof(DenyNetwork));
	if (inet_pton(AF_INET, buf, net->addr) == 1)
	{
		net->family = AF_INET;
		max_bits = 32;
	}
	else if (inet_pton(AF_INET6, buf, net->addr) == 1)
	{
		net->family = AF_INET6;
		max_bits = 128;
	}
	else
		return false;

	net->bits = max_bits;
	if (slash != NULL)
	{
		char	   *end;
		long		bits;

		if (slash[1] < '0' || slash[1] > '9')
			return false;
		bits = strtol(slash + 1, &end, 10);
		if (*end != '\0' || bits < 0 || bits > max_bits)
			return false;
		net->bits = (int) bits;
	}

	/* Clear the host bits: "10.1.2.3/8" means 10.0.0.0/8. */
	for (i = 0; i < max_bits / 8; i++)
	{
		int			keep = net->bits - i * 8;

		if (keep <= 0)
			net->addr[i] = 0;
		else if (keep < 8)
			net->addr[i] &= (unsigned char) (0xFF << (8 - keep));
	}
	return true;
}

/*
 * parse_networks
 *		Parse a comma-separated list of networks into an array allocated in
 *		the current memory context (NULL for an empty list).  Returns false,
 *		with *bad pointing to a copy of the first bad item, if an item is
 *		not a network.  Frees its own temporaries.
 */
static bool
parse_networks(const char *value, DenyNetwork **nets, int *count, char **bad)
{
	char	   *raw = pstrdup(value != NULL ? value : "");
	List	   *items;
	ListCell   *lc;
	int			n = 0;
	bool		ok = true;

	*nets = NULL;
	*count = 0;
	*bad = NULL;
	if (!SplitGUCList(raw, ',', &items))
	{
		*bad = pstrdup(value);
		list_free(items);
		pfree(raw);
		return false;
	}
	if (items != NIL)
		*nets = palloc0(sizeof(DenyNetwork) * list_length(items));
	foreach(lc, items)
	{
		char	   *item = lfirst(lc);

		if (item[0] == '\0')
			continue;
		if (!parse_network(item, &(*nets)[n]))
		{
			*bad = pstrdup(item);
			ok = false;
			break;
		}
		n++;
	}
	list_free(items);
	pfree(raw);
	if (!ok)
	{
		pfree(*nets);
		*nets = NULL;
		return false;
	}
	*count = n;
	return true;
}

/*
 * check_deny_networks
 *		GUC check hook: every item must be an IPv4 or IPv6 network.
 */
static bool
check_deny_networks(char **newval, void **extra, GucSource source)
{
	DenyNetwork *nets;
	int			count;
	char	   *bad;

	if (!parse_networks(*newval, &nets, &count, &bad))
	{
		GUC_check_errdetail("\"%s\" is not an IPv4 or IPv6 network (such as 169.254.0.0/16 or fe80::/10).",
							bad);
		pfree(bad);
		return false;
	}
	if (nets != NULL)
		pfree(nets);
	return true;
}

/*
 * HttpGuardInit
 *		Define outbox_saga.http_deny_networks.
 */
void
HttpGuardInit(void)
{
	DefineCustomStringVariable("outbox_saga.http_deny_networks",
							   "Networks (CIDR, comma-separated) HTTP destinations may not reach, checked on the resolved address.",
							   "The default refuses loopback, private, shared (CGNAT), link-local and unique-local networks; 0.0.0.0/8 and :: are refused whatever the setting.",
							   &http_deny_networks,
							   HTTP_DEFAULT_DENY_NETWORKS,
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_deny_networks, NULL, NULL);
}

/*
 * HttpGuardRefresh
 *		Re-parse the setting if it changed; see http_guard.h.
 */
uint64
HttpGuardRefresh(void)
{
	const char *value = http_deny_networks != NULL ? http_deny_networks : "";
	DenyNetwork *nets;
	int			count;
	char	   *bad;
	bool		ok;

	if (deny_source != NULL && strcmp(deny_source, value) == 0)
		return deny_generation;

	/*
	 * Parse in the caller's context; only the list and its source are kept
	 * in TopMemoryContext (the process lives as long as the setting may be
	 * reloaded, so nothing else may be left there).
	 */
	ok = parse_networks(value, &nets, &count, &bad);
	if (deny_source != NULL)
		pfree(deny_source);
	if (deny_list != NULL)
		pfree(deny_list);
	deny_source = MemoryContextStrdup(TopMemoryContext, value);
	deny_list = NULL;
	deny_count = 0;
	deny_invalid = !ok;
	if (ok && count > 0)
	{
		deny_list = MemoryContextAlloc(TopMemoryContext,
									   sizeof(DenyNetwork) * count);
		memcpy(deny_list, nets, sizeof(DenyNetwork) * count);
		deny_count = count;
	}
	if (nets != NULL)
		pfree(nets);
	if (!ok)
	{
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("outbox_saga.http_deny_networks is invalid: every HTTP destination is refused"),
				 errdetail("\"%s\" is not an IPv4 or IPv6 network.", bad),
				 errhint("Fix the setting and reload the configuration.")));
		pfree(bad);
	}
	return ++deny_generation;
}

/*
 * prefix_matches
 *		Whether the first 'bits' bits of 'a' and 'b' are equal.
 */
static bool
prefix_matches(const unsigned char *a, const unsigned char *b, int bits)
{
	int			whole = bits / 8;
	int			rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (unsigned char) (0xFF << (8 - rest))) == 0;
}

/*
 * always_denied
 *		Whether an address is one no setting can allow: 0.0.0.0/8 and ::
 *		("this host", which connect() takes as the local machine).  IPv4
 *		forms inside IPv6 are checked by the caller.
 */
static bool
always_denied(int family, const unsigned char *addr)
{
	static const unsigned char zero[16] = {0};

	if (family == AF_INET)
		return addr[0] == 0;
	return memcmp(addr, zero, 16) == 0;
}

/*
 * embedded_ipv4
 *		The IPv4 address an IPv6 address stands for, or NULL: IPv4-mapped
 *		(::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d, deprecated but still
 *		routed to a.b.c.d by some stacks) and the NAT64 well-known prefix
 *		(64:ff9b::a.b.c.d).  :: and ::1 are IPv6 addresses, not embedded.
 */
static const unsigned char *
embedded_ipv4(const unsigned char *addr)
{
	static const unsigned char v4_mapped[12] =
	{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
	static const unsigned char v4_compat[12] = {0};
	static const unsigned char nat64[12] =
	{0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};

	if (memcmp(addr, v4_mapped, 12) == 0 || memcmp(addr, nat64, 12) == 0)
		return addr + 12;
	if (memcmp(addr, v4_compat, 12) == 0 &&
		(addr[12] | addr[13] | addr[14]) != 0)
		return addr + 12;
	return NULL;
}

/*
 * address_denied
 *		Whether an address of 'family' (4 or 16 bytes at 'addr') is always
 *		denied, in the deny list, or the list is unparsable.  An IPv6 form
 *		of an IPv4 address (embedded_ipv4) is checked as that IPv4 address
 *		as well.  No allocation, no error.
 */
static bool
address_denied(int family, const unsigned char *addr)
{
	const unsigned char *v4 = NULL;
	int			i;

	if (deny_invalid)
		return true;
	if (always_denied(family, addr))
		return true;
	if (family == AF_INET6)
	{
		v4 = embedded_ipv4(addr);
		if (v4 != NULL && always_denied(AF_INET, v4))
			return true;
	}
	for (i = 0; i < deny_count; i++)
	{
		const DenyNetwork *net = &deny_list[i];

		if (net->family == family &&
			prefix_matches(addr, net->addr, net->bits))
			return true;
		if (v4 != NULL && net->family == AF_INET &&
			prefix_matches(v4, net->addr, net->bits))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------------
 * URLs
 * ------------------------------------------------------------------------
 */

/* The detail of the error about userinfo in a URL. */
static const char *const userinfo_detail =
"The URL contains a user name or password (\"user:password@\"); put credentials in the \"headers\" key instead.";

/*
 * url_error
 *		Error: the "url" key is unusable because of 'detail'.
 */
static void url_error(const char *detail) pg_attribute_noreturn();

static void
url_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("configuration key \"url\" is not a valid webhook URL"),
			 errdetail("%s", detail),
			 errhint("Use an absolute http:// or https:// URL such as \"https://example.com/webhooks\".")));
}

/*
 * has_part
 *		Whether URL handle 'u' has a non-empty 'part'.
 */
static bool
has_part(CURLU *u, CURLUPart part, char **value)
{
	char	   *v = NULL;

	if (curl_url_get(u, part, &v, 0) != CURLUE_OK || v == NULL)
		return false;
	if (v[0] == '\0')
	{
		curl_free(v);
		return false;
	}
	if (value != NULL)
		*value = v;
	else
		curl_free(v);
	return true;
}

/*
 * HttpGuardCheckUrl
 *		See http_guard.h.
 */
void
HttpGuardCheckUrl(const char *url)
{
	size_t		len = strlen(url);
	size_t		i;
	const char *authority;
	CURLU	   *u;
	CURLUcode	rc;
	char	   *host = NULL;
	char	   *scheme = NULL;
	unsigned char addr[16];
	char		hostbuf[INET6_ADDRSTRLEN + 2];
	int			family = 0;

	if (len == 0)
		url_error("The URL is empty.");
	if (len > HTTP_MAX_URL_BYTES)
		url_error(psprintf("The URL is longer than %d bytes.", HTTP_MAX_URL_BYTES));
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) url[i];

		if (c <= 0x20 || c == 0x7F)
			url_error("The URL contains whitespace or a control character.");
		if (c == '\\')
			url_error("The URL contains a backslash.");
	}
	if (pg_strncasecmp(url, "http://", 7) == 0)
		authority = url + 7;
	else if (pg_strncasecmp(url, "https://", 8) == 0)
		authority = url + 8;
	else
		url_error("Only http:// and https:// URLs are accepted.");
	if (*authority == '\0' || *authority == '/' || *authority == '?' ||
		*authority == '#')
		url_error("The URL has no host.");

	/*
	 * An '@' in the authority starts userinfo even when it is empty:
	 * libcurl sends "http://@host/" and "http://:@host/" with an
	 * "Authorization: Basic Og==" header, which its URL parser reports as
	 * no user name and no password.
	 */
	if (memchr(authority, '@', strcspn(authority, "/?#")) != NULL)
		url_error(userinfo_detail);

	u = curl_url();
	if (u == NULL)
		elog(ERROR, "outbox_saga: out of memory in libcurl");
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
	{
		char	   *detail = psprintf("libcurl cannot parse it: %s.",
									  curl_url_strerror(rc));

		curl_url_cleanup(u);
		url_error(detail);
	}
	if (!has_part(u, CURLUPART_SCHEME, &scheme) ||
		(pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
	{
		if (scheme != NULL)
			curl_free(scheme);
		curl_url_cleanup(u);
		url_error("Only http:// and https:// URLs are accepted.");
	}
	curl_free(scheme);
	if (has_part(u, CURLUPART_USER, NULL) ||
		has_part(u, CURLUPART_PASSWORD, NULL) ||
		has_part(u, CURLUPART_OPTIONS, NULL))
	{
		curl_url_cleanup(u);
		url_error(userinfo_detail);
	}
	if (!has_part(u, CURLUPART_HOST, &host))
	{
		curl_url_cleanup(u);
		url_error("The URL has no host.");
	}

	/* A literal address can be checked now; names are checked when used. */
	if (host[0] == '[')
	{
		size_t		hlen = strlen(host);

		if (hlen >= 2 && hlen - 2 < sizeof(hostbuf))
		{
			memcpy(hostbuf, host + 1, hlen - 2);
			hostbuf[hlen - 2] = '\0';
			if (inet_pton(AF_INET6, hostbuf, addr) == 1)
				family = AF_INET6;
		}
	}
	else if (inet_pton(AF_INET, host, addr) == 1)
		family = AF_INET;
	curl_free(host);
	curl_url_cleanup(u);

	if (family != 0)
	{
		const unsigned char *v4 = family == AF_INET6 ? embedded_ipv4(addr) : NULL;

		if (always_denied(family, addr) ||
			(v4 != NULL && always_denied(AF_INET, v4)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("configuration key \"url\" names an unspecified address"),
					 errdetail("0.0.0.0/8 and :: stand for this host and are never allowed."),
					 errhint("Use the address of the receiver.")));
		(void) HttpGuardRefresh();
		if (address_denied(family, addr))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("configuration key \"url\" names an address in outbox_saga.http_deny_networks"),
					 errdetail("HTTP destinations may not reach the networks listed in outbox_saga.http_deny_networks."),
					 errhint("Use another address, or change the setting (superuser).")));
	}
}

/*
 * HttpGuardRefusesAddress
 *		See http_guard.h.
 */
bool
HttpGuardRefusesAddress(int family, const unsigned char *addr,
						bool *setting_invalid)
{
	*setting_invalid = deny_invalid;
	return address_denied(family, addr);
}
