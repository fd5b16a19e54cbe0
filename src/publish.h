/*
 * publish.h
 *		Marks published by the primary for reading the feed on hot standbys
 *		(publish.c).
 */
#ifndef EC_FEED_PUBLISH_H
#define EC_FEED_PUBLISH_H

#include "utils/snapshot.h"

#include "ec_feed.h"

extern bool ec_publish(const EcMark *mark);
extern bool ec_publish_due(void);
extern void ec_publish_if_due(void);
extern bool ec_mark_covers(const EcMark *m, const EcMark *p);
extern bool ec_newest_published_mark(EcMark *mark, const EcMark *prev, Snapshot snap);
extern bool ec_mark_replayed(const EcMark *m);

/* publisher.c */
extern void ec_register_publishers(void);

#endif							/* EC_FEED_PUBLISH_H */
