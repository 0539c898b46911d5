/* SPDX-License-Identifier: MIT */
/*
 * link.h - a destination's migration state across link loss (DESIGN.md §6, docs/protocol.md
 * version 2): RUNNING -> PAUSED (a connection was lost or went silent) -> RESUMING (connected
 * again, handshaking) -> RUNNING ... -> DONE, or FAILED once the pause limit passes. Faulting
 * threads wait here while the link is down (async-signal-safe: atomics and futex), the recovery
 * thread moves the state and the program hears of it through callbacks. Also the reconnect
 * backoff schedule.
 */
#ifndef PAGEIN_NET_LINK_H
#define PAGEIN_NET_LINK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum pi_link_state {
	PI_LINK_RUNNING = 0,
	PI_LINK_PAUSED,    /* lost; faults wait; reconnecting with backoff */
	PI_LINK_RESUMING,  /* connected again; handshake, HAVE and re-sent requests under way */
	PI_LINK_DONE,      /* every page arrived; the source is finished with */
	PI_LINK_FAILED,    /* the pause limit passed (or resuming is impossible): pages fail */
};

struct pi_link {
	_Atomic uint32_t state;        /* enum pi_link_state; the futex word waiters sleep on */
	_Atomic uint64_t paused_at;    /* CLOCK_MONOTONIC ns of the pause under way, 0 if none */
	uint64_t limit_ns;             /* pause limit; 0 = wait for ever */
	pthread_mutex_t lock;          /* transitions and callbacks come in order */
	void (*on_paused)(void *arg, const char *why);   /* from the thread that noticed */
	void (*on_resumed)(void *arg, uint64_t paused_ns); /* from the recovery thread */
	void *cb_arg;
	/* statistics */
	_Atomic uint64_t pauses;       /* RUNNING -> PAUSED transitions */
	_Atomic uint64_t paused_ns;    /* total time spent paused or resuming (ended pauses) */
	_Atomic uint64_t last_pause_ns; /* length of the last ended pause */
	_Atomic uint64_t resumed_at;   /* CLOCK_MONOTONIC ns of the last resume, 0 if none */
	char why[128];                 /* why the last pause began (under lock) */
};

/* Start RUNNING with a pause limit (0 = for ever) and optional callbacks (NULL: none). */
void pi_link_init(struct pi_link *l, uint64_t limit_ns,
		  void (*on_paused)(void *arg, const char *why),
		  void (*on_resumed)(void *arg, uint64_t paused_ns), void *cb_arg);
void pi_link_destroy(struct pi_link *l);

static inline enum pi_link_state pi_link_state(struct pi_link *l)
{
	return (enum pi_link_state)atomic_load(&l->state);
}

/* RUNNING or RESUMING -> PAUSED: a connection was lost (why says how). Returns true when this
 * call began the pause (RUNNING -> PAUSED; on_paused is called). Not from a fetch. */
bool pi_link_pause(struct pi_link *l, const char *why);
/* PAUSED -> RESUMING. Returns false (and does nothing) from any other state. */
bool pi_link_resuming(struct pi_link *l);
/* PAUSED or RESUMING -> RUNNING; wakes the waiters; on_resumed gets the pause's length. */
bool pi_link_resumed(struct pi_link *l);
/* -> FAILED (from any state but DONE); wakes the waiters. */
void pi_link_fail(struct pi_link *l);
/* -> DONE (from RUNNING); wakes the waiters. */
void pi_link_done(struct pi_link *l);

/* For pagein_source_ops.hold: UINT64_MAX while PAUSED or RESUMING, else the time of the last
 * resume (0: none, or FAILED). Async-signal-safe. */
uint64_t pi_link_hold(struct pi_link *l);

/* The time the pause under way ends in failure (UINT64_MAX: none, or no limit). */
uint64_t pi_link_pause_deadline(struct pi_link *l);

/*
 * Wait while the link is PAUSED or RESUMING, until it is RUNNING or DONE (0), FAILED
 * (-ECONNRESET), or deadline_ns passes (-ETIMEDOUT; 0 = no deadline of the caller's own: then
 * only the pause limit bounds the wait). Async-signal-safe; any thread.
 */
int pi_link_wait(struct pi_link *l, uint64_t deadline_ns);

/* The delay before reconnect attempt n (0-based): 20 ms doubling to 5 s, +-20 % jitter from
 * *rng (any non-zero seed). */
uint64_t pi_link_backoff_ns(unsigned attempt, uint64_t *rng);

#endif
