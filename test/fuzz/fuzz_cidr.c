/*-------------------------------------------------------------------------
 *
 * fuzz_cidr.c
 *		libFuzzer target: the deny list of src/http/http_guard.c, the
 *		setting outbox_saga.http_deny_networks (its check hook, its parser)
 *		and the address check every HTTP connection passes.
 *
 * Input: the setting, a newline, then addresses to check, 17 bytes each
 * (a family byte, even: IPv4 in the first 4 bytes, odd: IPv6).
 * Properties: the check hook accepts exactly what HttpGuardRefresh can
 * parse (an unparsable setting, which the server would never install,
 * still denies everything); 0.0.0.0/8 and :: (and their IPv6 forms) are
 * always refused; every address written as an item of a valid list is
 * refused, and so are its IPv4-mapped form; HttpGuardRefresh changes the
 * generation exactly when the setting changes, and what it keeps for the
 * life of the process (in TopMemoryContext) is the parsed list and its
 * source, nothing more.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "utils/memutils.h"

#include "http/http_guard.h"

#include "fuzz_shim.h"

#define SETTING "outbox_saga.http_deny_networks"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	HttpGuardInit();
	return 0;
}

static void
expect_refused(int family, const unsigned char *addr, const char *why)
{
	bool		invalid;

	if (!HttpGuardRefusesAddress(family, addr, &invalid))
	{
		char		text[INET6_ADDRSTRLEN];

		inet_ntop(family, addr, text, sizeof(text));
		FuzzFail("%s allowed (%s)", text, why);
	}
}

/* Every item of 'setting' that is a plain address (no quotes) is refused. */
static void
check_items(const char *setting)
{
	char	   *copy = pstrdup(setting);
	char	   *item;
	char	   *save = NULL;

	for (item = strtok_r(copy, ",", &save); item != NULL;
		 item = strtok_r(NULL, ",", &save))
	{
		unsigned char addr[16];
		char	   *slash;

		while (*item == ' ' || *item == '\t' || *item == '\n' ||
			   *item == '\r' || *item == '\f')
			item++;
		item[strcspn(item, " \t\n\r\f")] = '\0';
		if ((slash = strchr(item, '/')) != NULL)
			*slash = '\0';
		if (inet_pton(AF_INET, item, addr) == 1)
		{
			unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

			expect_refused(AF_INET, addr, "an item of the list");
			memcpy(mapped + 12, addr, 4);
			expect_refused(AF_INET6, mapped, "IPv4-mapped form of an item");
		}
		else if (inet_pton(AF_INET6, item, addr) == 1)
			expect_refused(AF_INET6, addr, "an item of the list");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl;
	char	   *setting;
	size_t		setting_len;
	bool		accepted;
	bool		invalid = false;
	uint64		gen1;
	uint64		gen2;
	size_t		off;
	static const unsigned char zero[16] = {0};
	unsigned char v4zero[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 1, 2, 3};

	if (size > 4096)
		return 0;
	FuzzBeginInput();
	nl = memchr(data, '\n', size);
	setting_len = nl ? (size_t) (nl - data) : size;
	setting = FuzzCString(data, setting_len);
	setting[strlen(setting)] = '\0';

	/* As SET would: the check hook, and an invalid value installed anyway. */
	accepted = FuzzSetStringGuc(SETTING, setting, true);
	gen1 = HttpGuardRefresh();
	gen2 = HttpGuardRefresh();
	if (gen1 != gen2)
		FuzzFail("the generation changed without a new setting");
	if (FuzzContextChunks(TopMemoryContext) > 2)
		FuzzFail("TopMemoryContext holds %d chunks after a refresh (at most 2: the list and its source)",
				 FuzzContextChunks(TopMemoryContext));
	if (!accepted && FuzzWarningCount != 1)
		FuzzFail("an unparsable setting did not warn once (%d)", FuzzWarningCount);
	if (accepted && FuzzWarningCount != 0)
		FuzzFail("a valid setting warned: %s", FuzzLastError.message);

	expect_refused(AF_INET, zero, "0.0.0.0");
	expect_refused(AF_INET6, zero, "::");
	expect_refused(AF_INET6, v4zero, "::ffff:0.1.2.3");
	(void) HttpGuardRefusesAddress(AF_INET, zero, &invalid);
	if (invalid == accepted)
		FuzzFail("setting_invalid is %d for a setting the check hook %s",
				 invalid, accepted ? "accepted" : "refused");
	if (accepted)
		check_items(setting);

	for (off = setting_len + 1; off + 17 <= size; off += 17)
	{
		bool		inv;
		bool		refused;
		int			family = (data[off] & 1) ? AF_INET6 : AF_INET;

		refused = HttpGuardRefusesAddress(family, data + off + 1, &inv);
		if (!accepted && !refused)
			FuzzFail("an unparsable setting allowed an address");
	}

	/* A different setting is a new generation. */
	(void) FuzzSetStringGuc(SETTING, "10.0.0.0/8", true);
	if (HttpGuardRefresh() == gen1 && strcmp(setting, "10.0.0.0/8") != 0)
		FuzzFail("a new setting kept the old generation");
	FuzzEndInput();
	return 0;
}
