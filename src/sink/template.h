/*-------------------------------------------------------------------------
 *
 * template.h
 *		Names made from a template with {topic} and {event_type}: a kafka
 *		destination's "topic", a nats destination's "subject".
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SAGA_SINK_TEMPLATE_H
#define OUTBOX_SAGA_SINK_TEMPLATE_H

/*
 * Why a name is not one the kind may use (a constant or palloc'd text
 * without a period), or NULL if it is.
 */
typedef const char *(*SinkNameProblem) (const char *name);

/*
 * 'tmpl' with {topic} and {event_type} replaced by 'topic' and
 * 'event_type' (palloc'd); NULL, with *bad set to the start of the
 * offending "{...}" (at most 32 bytes), on any other placeholder.
 */
extern char *SinkExpandTemplate(const char *tmpl, const char *topic,
								const char *event_type, char **bad);

/*
 * The create_destination / alter_destination check of template key 'key':
 * only known placeholders, and the name made with 'sample_topic' and
 * 'sample_type' acceptable to 'problem'.  Error 22023 otherwise:
 * "configuration key "<key>" is not a valid <what>", with the template as
 * the "<noun>" of the detail.
 */
extern void SinkCheckTemplate(const char *key, const char *tmpl,
							  const char *sample_topic, const char *sample_type,
							  SinkNameProblem problem, const char *what,
							  const char *noun);

#endif							/* OUTBOX_SAGA_SINK_TEMPLATE_H */
