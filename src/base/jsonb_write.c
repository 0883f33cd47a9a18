/*-------------------------------------------------------------------------
 *
 * jsonb_write.c
 *		A jsonb datum written in one pass from a JsonbValue object.
 *
 * JsonbWriteSortedObject(object) returns what JsonbValueToJsonb(object)
 * returns, byte for byte, for the objects it accepts: an object whose
 * pairs are in jsonb's key order (shorter keys first, then bytewise) with
 * no key twice, and whose values are nulls, strings, numerics, booleans
 * or objects of the same kind.  The caller guarantees the order and the
 * uniqueness, as pushJsonbValue's sort would have made them; anything else
 * (an array, a jbvBinary container, a datetime) is an internal error.
 *
 * Why: JsonbValueToJsonb grows a StringInfo as it goes and makes a call
 * per key and value; the capture trigger's payload (events/capture.c)
 * spent about 4,400 instructions per row there.  Here the size is bounded
 * first (object_bound), the datum allocated once, and each key and value
 * copied into place.
 *
 * THE LAYOUT (utils/jsonb.h; the on-disk format of jsonb, fixed since
 * PostgreSQL 9.4): a container starts on a 4-byte boundary of the datum
 * (padding before it, zeros, counts as its own bytes); its header word is
 * nPairs | JB_FOBJECT; then one JEntry per key, then one per value; then
 * the keys' bytes, then the values' bytes, in the same order.  A JEntry
 * holds its type and the length of its data - or, every JB_OFFSET_STRIDE'th
 * JEntry (counting keys and values together), the end offset of its data
 * from the start of the data area, flagged JENTRY_HAS_OFF.  A numeric is
 * put on a 4-byte boundary too, the padding counted in its length; nulls
 * and booleans have no data.  An object's length as a value is everything
 * from its padding to its last byte.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/numeric.h"

#include "base/jsonb_write.h"

/*
 * object_bound
 *		An upper bound of the bytes 'object' takes, its padding included.
 */
static Size
object_bound(const JsonbValue *object)
{
	int			n = object->val.object.nPairs;
	Size		size = 3 + sizeof(uint32) + 2 * n * sizeof(JEntry);
	int			i;

	check_stack_depth();
	for (i = 0; i < n; i++)
	{
		const JsonbValue *v = &object->val.object.pairs[i].value;

		size += object->val.object.pairs[i].key.val.string.len;
		if (v->type == jbvString)
			size += v->val.string.len;
		else if (v->type == jbvNumeric)
			size += 3 + VARSIZE_ANY(v->val.numeric);
		else if (v->type == jbvObject)
			size += object_bound(v);
	}
	return size;
}

/* Zeros up to the next 4-byte boundary of the datum; returns how many. */
static int
pad_to_int(char *base, Size *pos)
{
	int			padlen = (int) (INTALIGN(*pos) - *pos);

	memset(base + *pos, 0, padlen);
	*pos += padlen;
	return padlen;
}

/*
 * too_long
 *		The error JsonbValueToJsonb raises for a container past the length
 *		a JEntry can hold (256 MB).
 */
static void
too_long(Size total)
{
	if (total > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("total size of jsonb object elements exceeds the maximum of %d bytes",
						JENTRY_OFFLENMASK)));
}

/*
 * write_entry
 *		Store the JEntry of child 'index' (keys first, then values), whose
 *		data is 'meta' and ends 'total' bytes into the data area.
 */
static void
write_entry(char *base, Size entries, int index, JEntry meta, Size total)
{
	too_long(total);
	if (index % JB_OFFSET_STRIDE == 0)
		meta = (meta & JENTRY_TYPEMASK) | (JEntry) total | JENTRY_HAS_OFF;
	memcpy(base + entries + index * sizeof(JEntry), &meta, sizeof(JEntry));
}

/*
 * write_object
 *		Write 'object' at *pos, moving *pos past it; returns its JEntry as a
 *		value (JENTRY_ISCONTAINER and its length).
 */
static JEntry
write_object(char *base, Size *pos, const JsonbValue *object)
{
	int			n = object->val.object.nPairs;
	Size		start = *pos;
	Size		entries;
	Size		data;
	uint32		header = (uint32) n | JB_FOBJECT;
	int			i;

	check_stack_depth();
	pad_to_int(base, pos);
	memcpy(base + *pos, &header, sizeof(uint32));
	*pos += sizeof(uint32);
	entries = *pos;
	*pos += 2 * n * sizeof(JEntry);
	data = *pos;

	for (i = 0; i < n; i++)
	{
		const JsonbValue *key = &object->val.object.pairs[i].key;
		int			len = key->val.string.len;

		Assert(key->type == jbvString);
#ifdef USE_ASSERT_CHECKING
		if (i > 0)
		{
			const JsonbValue *prev = &object->val.object.pairs[i - 1].key;

			/* jsonb's order: shorter first, then bytewise; no key twice */
			Assert(prev->val.string.len < len ||
				   (prev->val.string.len == len &&
					memcmp(prev->val.string.val, key->val.string.val, len) < 0));
		}
#endif
		memcpy(base + *pos, key->val.string.val, len);
		*pos += len;
		write_entry(base, entries, i, JENTRY_ISSTRING | (JEntry) len, *pos - data);
	}
	for (i = 0; i < n; i++)
	{
		const JsonbValue *v = &object->val.object.pairs[i].value;
		JEntry		meta;

		switch (v->type)
		{
			case jbvNull:
				meta = JENTRY_ISNULL;
				break;
			case jbvBool:
				meta = v->val.boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
				break;
			case jbvString:
				memcpy(base + *pos, v->val.string.val, v->val.string.len);
				*pos += v->val.string.len;
				meta = JENTRY_ISSTRING | (JEntry) v->val.string.len;
				break;
			case jbvNumeric:
				{
					int			padlen = pad_to_int(base, pos);
					Size		numlen = VARSIZE_ANY(v->val.numeric);

					memcpy(base + *pos, v->val.numeric, numlen);
					*pos += numlen;
					meta = JENTRY_ISNUMERIC | (JEntry) (padlen + numlen);
					break;
				}
			case jbvObject:
				meta = write_object(base, pos, v);
				break;
			default:
				elog(ERROR, "jsonb value of type %d cannot be written by JsonbWriteSortedObject",
					 (int) v->type);
		}
		write_entry(base, entries, n + i, meta, *pos - data);
	}

	too_long(*pos - start);
	return JENTRY_ISCONTAINER | (JEntry) (*pos - start);
}

/*
 * JsonbWriteSortedObject
 *		The jsonb datum of 'object' (see the file header for what it must
 *		be), in the current memory context.
 */
Jsonb *
JsonbWriteSortedObject(const JsonbValue *object)
{
	Size		bound = VARHDRSZ + object_bound(object);
	char	   *base;
	Size		pos = VARHDRSZ;

	Assert(object->type == jbvObject);
	base = palloc(bound);
	(void) write_object(base, &pos, object);
	Assert(pos <= bound);
	SET_VARSIZE(base, pos);
	return (Jsonb *) base;
}
