/*-------------------------------------------------------------------------
 * topic_acl.h
 *		Topics: their owners and the read and write privileges (G14).
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_TOPIC_ACL_H
#define OUTBOX_SAGA_TOPIC_ACL_H

#include "postgres.h"

/* The two privileges a topic has. */
typedef enum TopicPrivilege
{
	TOPIC_READ,					/* subscribe, receive, see its dead letters */
	TOPIC_WRITE					/* emit, capture, saga emit steps */
} TopicPrivilege;

/*
 * Bumped whenever a topic, a topic grant, a role or a role membership
 * changes (in this backend's view, i.e. when the invalidation arrives).  A
 * cached decision is valid while the generation it was made under is
 * current.  Never 0.
 */
extern uint64 TopicAclGeneration;

extern bool TopicAclCheck(Oid role, text *topic, TopicPrivilege priv,
						  bool create);
extern void TopicAclRequire(Oid role, text *topic, TopicPrivilege priv,
							const char *hint);

#endif							/* OUTBOX_SAGA_TOPIC_ACL_H */
