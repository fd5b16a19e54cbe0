/*
 * visibility.h
 *		Read-your-writes checks (visibility.c) and the snapshot-free wait (wait.c),
 *		for the checks against a registered consumer (consumer.c).
 */
#ifndef EC_VISIBILITY_H
#define EC_VISIBILITY_H

#include "fmgr.h"

#include "ec_feed.h"

/* a condition to wait for; takes a fresh snapshot, if any, each call */
typedef bool (*EcWaitCheck) (void *arg);

extern bool ec_token_visible_now(const EcToken *token);
extern bool ec_can_wait_without_snapshot(FunctionCallInfo fcinfo);
/* steps of 1, 2, 4 ... up to max_step_ms (0: 10) milliseconds */
extern bool ec_wait_until(EcWaitCheck check, void *arg, int wait_ms, int max_step_ms,
						  long *waited_ms);
extern const char *ec_pending_reason(void);
extern int	ec_retry_after(long waited_ms);
pg_noreturn extern void ec_not_consistent(const char *reason, const char *consumer,
							  const char *suggestion, int retry_after_ms,
							  const char *hint);

#endif							/* EC_VISIBILITY_H */
