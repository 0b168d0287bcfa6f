/*
 * creditmux credit protocol: a Promela model for the spin model checker.
 *
 * README.md next to this file says what is modelled, what is abstracted
 * away and why, the bounds, the properties and the bug variants; check.sh
 * runs every check.  Section numbers (§) refer to proto/SPEC.md.
 *
 * Two peers, 0 (A) and 1 (B), joined by two bounded FIFO transports.  A
 * opens NS streams and writes D DATA units on each, B opens NSB streams and
 * writes DB units on each (NSB = 0: data flows A -> B only); the other peer
 * accepts the streams and its application reads them one unit at a time.
 * Each stream carries data one way only (opener -> acceptor): the
 * acceptor's own sending direction is taken as finished from the start, so
 * a stream is closed for the acceptor once FIN arrived and for the opener
 * once FIN was sent (§8.3, §8.6 with an empty reverse direction).
 *
 * Per peer, four processes: Rx reads the transport (never waits for
 * anything else, §10.4 item 1), Tx writes it (control slots first, §10.2),
 * App is the application (open, read, stop reading, abandon, abort), Timer
 * fires the probe, GOAWAY and the drain deadline.  Every step is atomic.
 *
 * Compile-time switches (spin -DNAME ...):
 *   property    PROP_A  deadlock freedom (§10.4): invalid end states + quiescence assertion
 *               PROP_B  credit respected, buffers bounded (§9.2-9.4, §9.6): assertions
 *               PROP_C  credit conservation (§9.7): invariant + assertion at rest
 *               PROP_D  blocked senders get unblocked (§11): LTL `live`, lossy updates
 *                       (RELIABLE: without loss; WU_LOSS_ONLY: MAX_STREAMS never lost)
 *   bug         NO_PROBE, CONTROL_BEHIND_DATA, RELEASE_ON_RECEIPT, LEAK_ON_RESET
 *   bounds      NS NSB D DB SW CW M CAP LOSS GOAWAY_BY (defaults below)
 *   features    NO_STOP NO_ABANDON NO_ABORT NO_GOAWAY remove optional events
 *   coverage    NOREACH compiles the REACH markers out
 */

/* ------------------------------------------------------------ bounds */

#ifndef NS
#define NS 2        /* streams each peer opens */
#endif
#ifndef NSB
#define NSB NS      /* streams peer B opens (<= NS); A opens NS */
#endif
#define NOPEN(p) (NS + (NSB - NS) * (p))
#ifndef D
#define D 3         /* DATA units a writer wants to send per stream (1 unit per frame, last one carries FIN) */
#endif
#ifndef DB
#define DB D        /* DATA units per stream that B opens */
#endif
#define DOF(g) (D + (DB - D) * OPENER(g))       /* no ?: here, the ltl parser rejects it */
#ifndef SW
#define SW 2        /* stream window (INITIAL_STREAM_WINDOW) */
#endif
#ifndef CW
#define CW 4        /* connection window (CONNECTION_WINDOW) */
#endif
#ifndef M
#define M 1         /* MAX_STREAMS setting */
#endif
#ifndef CAP
#define CAP 2       /* frames the transport holds per direction: less than CW, so DATA alone can fill it */
#endif
#ifndef LOSS
#define LOSS 1      /* PROP_D: answers to BLOCKED that the lossy channel may drop, in total */
#endif

#ifdef PROP_D
#ifndef RELIABLE
#define LOSSY       /* liveness is checked against a channel that loses spontaneous credit updates */
#endif
#endif

/* Update thresholds of §9.5 / §9.6: floor(W/2), at least 1 (a real window is >= 1024). */
#if SW / 2 > 0
#define SW_TH (SW / 2)
#else
#define SW_TH 1
#endif
#if CW / 2 > 0
#define CW_TH (CW / 2)
#else
#define CW_TH 1
#endif
#if M / 2 > 0
#define M_TH (M / 2)
#else
#define M_TH 1
#endif

/* ------------------------------------------------------------ naming */

/* Streams have a global number g = opener * NS + index.  Sender-side state of
 * g belongs to OPENER(g), receiver-side state to the other peer. */
#define NG          (2 * NS)
#define G(o, k)     ((o) * NS + (k))
#define OPENER(g)   ((g) / NS)
#define IDX(g)      ((g) % NS)
#define CONN        NG          /* stream id 0 of the wire: connection scope */
#define STRS        (NG + 1)    /* BLOCKED with the STREAMS flag */

/* Boolean "any of peer o's own streams" / numeric sum, for NS = 1..3. */
#if NS == 1
#define ANY(o, X)   (X(G(o, 0)))
#define SUM(o, X)   (X(G(o, 0)))
#elif NS == 2
#define ANY(o, X)   (X(G(o, 0)) || X(G(o, 1)))
#define SUM(o, X)   (X(G(o, 0)) + X(G(o, 1)))
#elif NS == 3
#define ANY(o, X)   (X(G(o, 0)) || X(G(o, 1)) || X(G(o, 2)))
#define SUM(o, X)   (X(G(o, 0)) + X(G(o, 1)) + X(G(o, 2)))
#else
#error "NS must be 1, 2 or 3"
#endif

#define MAX(a, b)   ((a) > (b) -> (a) : (b))

/* Sender-side stream states (at the opener). */
#define S_IDLE  0   /* not opened yet */
#define S_OPEN  1   /* opened by the application, send side open */
#define S_DONE  2   /* FIN sent: closed for the opener */
#define S_RST   3   /* RESET sent or received, or refused by GOAWAY: closed */

/* Receiver-side stream states (at the acceptor). */
#define R_IDLE  0   /* no frame seen */
#define R_OPEN  1   /* receiving, FIN not yet received */
#define R_FIN   2   /* FIN received: closed, unread data still readable */
#define R_GONE  3   /* closed and released (§8.8): read to the end, discarded or refused */

mtype = { DATA, WU, MS, BLK, RST, GA };

/* ------------------------------------------------------------ coverage markers
 *
 * REACH(n) records, outside the state vector, that the path it sits on ran
 * in this search; pan prints "reached: <bits>" at exit and check.sh fails a
 * run of the correct model that missed a marker it should hit, so that a
 * property cannot pass because its interesting paths became unreachable.
 *   0 DATA on a closed stream, counted and released at once (§6.2, §8.5)
 *   1 stream refused after GOAWAY, its credit released (§8.2 step 3)
 *   2 BLOCKED answered with an unchanged limit (§11.3)
 *   3 BLOCKED answered with a raised limit (credit held back by the threshold or lost)
 *   4 RESET after FIN: unread data stays readable (§8.7); unreachable
 *     here (a stream is closed for its opener once FIN is sent)
 *   5 unread data discarded by a reset, credit released (§8.7, §9.4)
 *   6 abandoned after FIN: unread data discarded without RESET
 *   7 drain deadline resets a stream (§13.2)
 *   8 GOAWAY refuses an own stream locally (§13.1)
 *   9 BLOCKED (connection) written
 *  10 BLOCKED STREAMS written, 11 MAX_STREAMS written
 *  12 pending update coalesced with a newer one (§10.3)
 *  13 pending slot withdrawn when its stream closed
 *  14 spontaneous update lost, 15 answer lost (lossy channel only)
 *  16 DATA written while the other direction's transport was full
 *  17 BLOCKED (stream) written
 */
#ifdef NOREACH
#define REACH(n) skip
#else
c_decl {
  static unsigned long reach_bits;
  static void reach_report(void) { printf("reached: %lu\n", reach_bits); }
}
#define REACH(n) c_code { if (!reach_bits) atexit(reach_report); reach_bits |= 1UL << (n); }
#endif

/* The transport, one bounded FIFO per direction: ch[p] carries what p writes.
 * Reliable and ordered (§1), except that PROP_D's lossy variant drops credit
 * updates at the writer (below). */
chan ch[2] = [CAP] of { mtype, byte, byte };   /* kind, stream (or CONN/STRS), value */

/* ------------------------------------------------------------ control slots (§10.3)
 *
 * Each side has one coalescing slot per kind and scope.  A slot's value is
 * "pending" when non-zero; setting a slot that is already pending replaces
 * its value (coalescing) and does not queue it twice.  ctlq[p] holds the ids
 * of p's pending slots in the order they became pending: the writer serves
 * them first-in first-out (fair among control frames) and before any DATA
 * (§10.2).  Slot memory is separate from the transport, which is the
 * "reserve" of §10.3: a control frame never needs room in a full transport
 * to be generated, it only waits in its slot until the transport drains.
 *
 * Slot ids at side p:
 *   g            RESET on stream g (p is its opener or its acceptor)
 *   NG + g       BLOCKED on stream g if p opened g, else WINDOW_UPDATE for g
 *   SL_WUC ...   connection-level slots
 */
#define SL_RST(g)   (g)
#define SL_STR(g)   (NG + (g))
#define SL_WUC      (2 * NG)
#define SL_MS       (2 * NG + 1)
#define SL_BLKC     (2 * NG + 2)
#define SL_BLKN     (2 * NG + 3)
#define SL_GA       (2 * NG + 4)
#define NSLOT       (2 * NG + 5)

chan ctlq[2] = [NSLOT] of { byte };

/* ------------------------------------------------------------ state */

/* Sending side of stream g, at OPENER(g) (§9.2). */
byte ss[NG];        /* S_* */
byte sent[NG];      /* sent_s */
byte lim[NG];       /* limit_s: highest stream limit received */
bool blk_s[NG];     /* slot: BLOCKED(g) */
bool rst_o[NG];     /* slot: RESET(g) from the opener */

/* Sending side of the connection, per peer. */
byte sent_c[2];     /* sent_c */
byte lim_c[2];      /* limit_c */
byte slim[2];       /* streams_limit (§9.6) */
byte nopen[2];      /* streams opened so far (next index) */
bool blk_c[2];      /* slot: BLOCKED(connection) */
bool blk_n[2];      /* slot: BLOCKED STREAMS */
/* A probe is outstanding from the moment the timer fires until an update
 * for that scope arrives (the answer or any other): the backoff of §11.2
 * never lets probes be closer than one RTT, and while one is outstanding
 * another could only repeat its answer. */
bool prb_s[NG];
bool prb_c[2];
bool prb_n[2];

/* Receiving side of stream g, at the peer of OPENER(g) (§9.3-9.5). */
byte rs[NG];        /* R_* */
byte recv[NG];      /* recv_s */
byte rel[NG];       /* released_s */
byte ann[NG];       /* A_s: highest limit announced (queued counts as announced, §9.3) */
byte wu[NG];        /* slot: WINDOW_UPDATE(g), value = Limit, 0 = empty */
bool wua[NG];       /* ... and it answers a BLOCKED (not droppable in PROP_D) */
bool stopped[NG];   /* the application stopped reading g forever */
bool rst_a[NG];     /* slot: RESET(g) from the acceptor */

/* Receiving side of the connection, per peer. */
byte recv_c[2];     /* recv_c */
byte rel_c[2];      /* released_c */
byte ann_c[2];      /* A_c */
byte wu_c[2];       /* slot: WINDOW_UPDATE(0) */
bool wua_c[2];
byte C[2];          /* peer streams released (§8.8) */
byte ann_ms[2];     /* announced MAX_STREAMS */
byte ms[2];         /* slot: MAX_STREAMS */
bool msa[2];

/* GOAWAY NO_ERROR and drain (§13.2). */
bool ga_s[2];       /* p has sent (decided) GOAWAY */
bool ga_r[2];       /* p has received GOAWAY */
byte ga_slot[2];    /* slot: GOAWAY, value = last_stream_id + 1 */
bool drained[2];    /* p's drain deadline has fired */

#ifdef LOSSY
byte loss = LOSS;   /* answers to BLOCKED the channel may still drop */
#endif

#ifdef RELEASE_ON_RECEIPT
/* The bug releases credit when a frame is parsed; what the application has
 * read (or what was discarded) is then tracked apart, for the buffer bound. */
byte rd[NG];
byte rd_c[2];
#else
#define rd   rel    /* correct model: released == read or discarded */
#define rd_c rel_c
#endif

/* ------------------------------------------------------------ predicates */

#define WANT(g)      (ss[g] == S_OPEN && sent[g] < DOF(g))
/* §8.2 rule 3: opening frames go out in id order, so a stream's first DATA
 * waits until every lower stream of the same opener is announced (a lower
 * id would otherwise be implicitly closed).  NS <= 3, so at most 2 lower. */
#define UNANNOUNCED(g) (ss[g] == S_OPEN && sent[g] == 0)
#define ORDER_OK(g)  (sent[g] > 0 || IDX(g) == 0 || \
                      (!UNANNOUNCED((g) - 1) && (IDX(g) < 2 || !UNANNOUNCED((g) - 2))))
#define CAN_DATA(g)  (WANT(g) && ORDER_OK(g) && sent[g] < lim[g] && sent_c[OPENER(g)] < lim_c[OPENER(g)])
/* Blocked scopes, §11.1. */
#define BLK_S(g)     (WANT(g) && sent[g] == lim[g])
#define BLK_C1(g)    (WANT(g) && sent[g] < lim[g] && sent_c[OPENER(g)] == lim_c[OPENER(g)])
#define BLK_C(p)     ANY(p, BLK_C1)
#define BLK_N(p)     (nopen[p] < NOPEN(p) && nopen[p] >= slim[p] && !ga_s[p] && !ga_r[p])
#define BLKD(p)      (ANY(p, BLK_S) || BLK_C(p) || BLK_N(p))

#define CAN_OPEN(p)  (nopen[p] < NOPEN(p) && nopen[p] < slim[p] && !ga_s[p] && !ga_r[p])
#define HOLDS(g)     (rs[g] == R_OPEN || rs[g] == R_FIN)   /* the application holds the stream */
#define CAN_READ(g)  (HOLDS(g) && recv[g] > rd[g] && !stopped[g])
#define CAN_STOP(g)  (HOLDS(g) && !stopped[g])
#define CAN_ABORT(g) (ss[g] == S_OPEN && sent[g] > 0)

/* Optional events (a reader stops or abandons, a writer aborts, a side
 * sends GOAWAY).  In the safety runs they may happen at any moment or never.
 * Under weak fairness (PROP_D) an option that stays enabled would be forced
 * to happen, and a forced abort or drain unblocks every sender, which would
 * hide the very stalls (d) looks for.  So for PROP_D init picks a plan for
 * each optional event (never, or eventually at any moment) and only planned
 * events are enabled. */
#ifdef PROP_D
byte plan_r[NG];    /* reader of g: 0 reads to the end, 1 stops, 2 abandons */
bool plan_w[NG];    /* writer of g aborts */
bool plan_ga[2];    /* p sends GOAWAY */
#define MAY_STOP(g)    (plan_r[g] == 1)
#define MAY_ABANDON(g) (plan_r[g] == 2)
#define MAY_ABORT(g)   (plan_w[g])
#define MAY_GOAWAY(p)  (plan_ga[p])
#else
#define MAY_STOP(g)    1
#define MAY_ABANDON(g) 1
#define MAY_ABORT(g)   1
#define MAY_GOAWAY(p)  1
#endif

/* §13.1: the opening frame of every stream p opened goes out before its GOAWAY. */
#ifndef GOAWAY_BY
#define GOAWAY_BY 2     /* which peer may send GOAWAY: 0 (A), 1 (B), 2 (either) */
#endif
#define CAN_GOAWAY(p) ((GOAWAY_BY == 2 || GOAWAY_BY == p) && MAY_GOAWAY(p) && !ga_s[p] && !ANY(p, UNANNOUNCED))
#define SEEN1(g)     (rs[g] != R_IDLE)
#define OWN_LIVE(g)  (ss[g] == S_OPEN)
#define PEER_LIVE(g) (rs[g] == R_OPEN)
#define CAN_DRAIN(p) ((ga_s[p] || ga_r[p]) && !drained[p] && (ANY(p, OWN_LIVE) || ANY(1 - p, PEER_LIVE)))

/* ------------------------------------------------------------ emitting control frames */

#ifndef CONTROL_BEHIND_DATA

/* Queue slot id of side p unless already pending (then it is coalesced). */
#define PUSH(p, id, pending)  if :: !(pending) -> ctlq[p]!(id) :: else -> REACH(12) fi

/* Withdraw a pending slot of a stream that just closed: its frame is no
 * longer allowed (§8.4) and its id leaves the queue (?? takes the first
 * matching message wherever it is). */
#define CANCEL(p, id, pending) \
  if \
  :: pending -> ctlq[p]??eval(id); pending = 0; REACH(13) \
  :: else -> skip \
  fi

#define EMIT_RST_O(p, g)  PUSH(p, SL_RST(g), rst_o[g]); rst_o[g] = 1
#define EMIT_RST_A(p, g)  PUSH(p, SL_RST(g), rst_a[g]); rst_a[g] = 1
#define EMIT_WU(p, g)     PUSH(p, SL_STR(g), wu[g]); wu[g] = ann[g]
#define EMIT_WUC(p)       PUSH(p, SL_WUC, wu_c[p]); wu_c[p] = ann_c[p]
#define EMIT_MS(p)        PUSH(p, SL_MS, ms[p]); ms[p] = ann_ms[p]
#define ANS_WU(p, g)      EMIT_WU(p, g); wua[g] = 1
#define ANS_WUC(p)        EMIT_WUC(p); wua_c[p] = 1
#define ANS_MS(p)         EMIT_MS(p); msa[p] = 1
#define EMIT_BLK_S(p, g)  PUSH(p, SL_STR(g), blk_s[g]); blk_s[g] = 1
#define EMIT_BLKC(p)      PUSH(p, SL_BLKC, blk_c[p]); blk_c[p] = 1
#define EMIT_BLKN(p)      PUSH(p, SL_BLKN, blk_n[p]); blk_n[p] = 1
#define EMIT_GA(p, last)  PUSH(p, SL_GA, ga_slot[p]); ga_slot[p] = (last) + 1

/* Every step is indivisible and deterministic: d_step (cheaper for pan).
 * The writer needs real nondeterminism when the channel is lossy. */
#define STEP d_step
#ifdef LOSSY
#define TXSTEP atomic
#else
#define TXSTEP d_step
#endif

#else /* CONTROL_BEHIND_DATA: the bug */

/* No slots, no reserve: a control frame is written into the transport when
 * it arises, behind whatever DATA already fills it, and the process that
 * produced it (the reader of the other direction, the application, the
 * timer) waits there while the transport is full.  §10.4 items 1 and 3 are
 * what this breaks. */
#define CANCEL(p, id, pending) skip
#define EMIT_RST_O(p, g)  ch[p]!RST,g,0
#define EMIT_RST_A(p, g)  ch[p]!RST,g,0
#define EMIT_WU(p, g)     ch[p]!WU,g,ann[g]
#define EMIT_WUC(p)       ch[p]!WU,CONN,ann_c[p]
#define EMIT_MS(p)        ch[p]!MS,0,ann_ms[p]
#define ANS_WU(p, g)      EMIT_WU(p, g)
#define ANS_WUC(p)        EMIT_WUC(p)
#define ANS_MS(p)         EMIT_MS(p)
#define EMIT_BLK_S(p, g)  ch[p]!BLK,g,0
#define EMIT_BLKC(p)      ch[p]!BLK,CONN,0
#define EMIT_BLKN(p)      ch[p]!BLK,STRS,0
#define EMIT_GA(p, last)  ch[p]!GA,0,last

/* A step may now block half-way on a full transport: atomic, not d_step. */
#define STEP atomic
#define TXSTEP atomic

#endif

/* ------------------------------------------------------------ invariants (checked after every step) */

/* (b) §9.2, §9.3, §9.4, §9.6: nobody uses credit it was not granted, the
 * sender's view never exceeds what the receiver announced, and a receiver
 * never buffers more than the window it reserved memory for. */
#define INV_B_S(g)  ((ss[g] != S_OPEN || (sent[g] <= lim[g] && (rs[g] == R_GONE || lim[g] <= ann[g]))) && \
                     (!HOLDS(g) || (recv[g] <= ann[g] && recv[g] - rd[g] <= SW)))
#define UNREL(g)    (rs[g] == R_OPEN || rs[g] == R_FIN)
#define INV_B_P(p)  (sent_c[p] <= lim_c[p] && lim_c[p] <= ann_c[1 - p] && \
                     recv_c[1 - p] <= ann_c[1 - p] && recv_c[1 - p] - rd_c[1 - p] <= CW && \
                     nopen[p] <= slim[p] && slim[p] <= ann_ms[1 - p] && SUM(p, UNREL) <= M)

/* (c) §9.7: for each receiver q (data opened by p = 1 - q):
 *     recv_c - released_c == sum over streams of (recv_s - released_s).
 * Streams that are closed and released have recv_s == released_s, and DATA
 * on closed or refused streams is counted and released at once. */
#define UNREAD(g)   (recv[g] - rel[g])
#define INV_C_Q(q)  (recv_c[q] - rel_c[q] == SUM(1 - q, UNREAD))

#if NS == 1
#define ALL_B_S(o)  (INV_B_S(G(o, 0)))
#elif NS == 2
#define ALL_B_S(o)  (INV_B_S(G(o, 0)) && INV_B_S(G(o, 1)))
#else
#define ALL_B_S(o)  (INV_B_S(G(o, 0)) && INV_B_S(G(o, 1)) && INV_B_S(G(o, 2)))
#endif

inline CHECK() {
#ifdef PROP_B
  assert(ALL_B_S(0) && ALL_B_S(1) && INV_B_P(0) && INV_B_P(1));
#endif
#ifdef PROP_C
  assert(INV_C_Q(0) && INV_C_Q(1));
#endif
  skip
}

/* ------------------------------------------------------------ closing
 *
 * A closed side's counters are never read again (frames for a closed stream
 * are ignored or, DATA, counted at connection level only), so they are reset
 * to 0: otherwise states that differ only in dead counters, with identical
 * futures, would be stored apart. */
inline close_send(g, st) {
  ss[g] = st;
  sent[g] = 0;
  lim[g] = 0;
  prb_s[g] = 0;
  CANCEL(OPENER(g), SL_STR(g), blk_s[g])      /* no BLOCKED on a closed stream */
}
inline gone(g) {
  rs[g] = R_GONE;
  recv[g] = 0;
  rel[g] = 0;
#ifdef RELEASE_ON_RECEIPT
  rd[g] = 0;
#endif
  ann[g] = 0;
  stopped[g] = 0;
  CANCEL(1 - OPENER(g), SL_STR(g), wu[g]);    /* no stream update once finished (§6.3) */
  wua[g] = 0
}

/* ------------------------------------------------------------ receiver actions */

/* §9.5: send an update as soon as the unannounced credit reaches the threshold. */
inline upd_stream(p, g) {
  if
  :: rs[g] == R_OPEN && rel[g] + SW >= ann[g] + SW_TH -> ann[g] = rel[g] + SW; EMIT_WU(p, g)
  :: else -> skip
  fi
}
inline upd_conn(p) {
  if
  :: rel_c[p] + CW >= ann_c[p] + CW_TH -> ann_c[p] = rel_c[p] + CW; EMIT_WUC(p)
  :: else -> skip
  fi
}
/* §9.6, no MAX_STREAMS after our own GOAWAY except as an answer. */
inline upd_ms(p) {
  if
  :: !ga_s[p] && C[p] + M >= ann_ms[p] + M_TH -> ann_ms[p] = C[p] + M; EMIT_MS(p)
  :: else -> skip
  fi
}

/* Release n units of connection credit that no stream holds (DATA on a
 * closed or refused stream, §6.2 step 2, §8.5). */
inline free_conn(p, n) {
#ifdef RELEASE_ON_RECEIPT
  rd_c[p] = rd_c[p] + n;        /* discarded: counts as consumed for the buffer bound */
#endif
  rel_c[p] = rel_c[p] + n;
  upd_conn(p)
}

/* Discard the unread data of peer stream g and release its credit (§8.7,
 * §9.4); the stream is closed and released (§8.8). */
inline discard(p, g) {
  if :: recv[g] > rd[g] -> REACH(5) :: else -> skip fi;
#ifdef RELEASE_ON_RECEIPT
  rd_c[p] = rd_c[p] + recv[g] - rd[g];
  rd[g] = recv[g];
#else
#ifndef LEAK_ON_RESET
  rel_c[p] = rel_c[p] + recv[g] - rel[g];
#endif
  /* LEAK_ON_RESET: the stream's buffer goes away but the connection
   * credit it held is never given back. */
  rel[g] = recv[g];
#endif
  gone(g);
  C[p]++;
  upd_conn(p);
  upd_ms(p)
}

/* The application reads one unit (§9.4: credit is released now, not on receipt). */
inline read_unit(p, g) {
#ifdef RELEASE_ON_RECEIPT
  rd[g]++;
  rd_c[p]++;
#else
  rel[g]++;
  rel_c[p]++;
  upd_stream(p, g);
  upd_conn(p);
#endif
  if
  :: rs[g] == R_FIN && recv[g] == rd[g] -> gone(g); C[p]++; upd_ms(p)  /* read to the end: released */
  :: else -> skip
  fi
}

/* The application abandons peer stream g (drops its handle): RESET CANCEL if
 * its receive side is not finished (§8.7), and its unread data is released. */
inline abandon(p, g) {
  if
  :: rs[g] == R_OPEN -> EMIT_RST_A(p, g)
  :: else -> REACH(6)                           /* finished: no RESET, just let go */
  fi;
  discard(p, g)
}

/* DATA on stream g (opened by the peer), fin = last unit (§6.2). */
inline on_data(p, g, fin) {
  recv_c[p]++;                                  /* every DATA counts, whatever the stream state */
  if
  :: rs[g] == R_IDLE && ga_s[p] ->
     /* §8.2 step 3, §13.1: a stream opened after our GOAWAY is refused; its
      * credit is released at once and it counts as released. */
     gone(g);
     C[p]++;
     EMIT_RST_A(p, g);
     free_conn(p, 1);
     REACH(1)
  :: rs[g] == R_GONE ->
     free_conn(p, 1);                           /* closed: counted, released, dropped */
     REACH(0)
  :: else ->
     assert(rs[g] == R_IDLE || rs[g] == R_OPEN); /* nothing follows FIN */
#ifdef PROP_B
     /* A new stream: its index is within the announced stream limit and
      * every lower id of the opener has been seen (§8.2, §9.6). */
     assert(rs[g] != R_IDLE || (IDX(g) < ann_ms[p] && (IDX(g) == 0 || rs[(g) - 1] != R_IDLE)));
#endif
     rs[g] = R_OPEN;
     recv[g]++;
     if
     :: fin -> rs[g] = R_FIN
     :: else -> skip
     fi;
#ifdef RELEASE_ON_RECEIPT
     rel[g]++;                                  /* the bug: credit back before the application read */
     rel_c[p]++;
     upd_stream(p, g);
     upd_conn(p)
#else
     skip
#endif
  fi
}

/* BLOCKED: §11.3, answer every one with the current limit, even unchanged. */
#define MARK_ANSWER(a, n) if :: (n) > (a) -> REACH(3) :: else -> REACH(2) fi
inline on_blk(p, s) {
  if
  :: s == CONN -> MARK_ANSWER(ann_c[p], rel_c[p] + CW); ann_c[p] = MAX(ann_c[p], rel_c[p] + CW); ANS_WUC(p)
  :: s == STRS -> MARK_ANSWER(ann_ms[p], C[p] + M); ann_ms[p] = MAX(ann_ms[p], C[p] + M); ANS_MS(p)
  :: else ->
     if
     :: rs[s] == R_OPEN -> MARK_ANSWER(ann[s], rel[s] + SW); ann[s] = MAX(ann[s], rel[s] + SW); ANS_WU(p, s)
     :: else -> skip                            /* closed or finished: ignore (§6.5) */
     fi
  fi
}

/* ------------------------------------------------------------ sender actions */

inline on_wu(p, s, v) {
  if
  :: s == CONN -> lim_c[p] = MAX(lim_c[p], v); prb_c[p] = 0
  :: else ->
     if
     :: ss[s] == S_OPEN -> lim[s] = MAX(lim[s], v); prb_s[s] = 0
     :: else -> skip                            /* closed: ignore */
     fi
  fi
}

inline on_rst(p, g) {
  if
  :: OPENER(g) == p ->                          /* our stream, reset by the acceptor */
     if
     :: ss[g] == S_OPEN -> close_send(g, S_RST)  /* unsent data discarded */
     :: else -> skip
     fi
  :: else ->                                    /* the peer's stream, reset by its opener */
     assert(rs[g] != R_IDLE);
     if
     :: rs[g] == R_OPEN -> discard(p, g)        /* FIN not received: unread data discarded, released */
     :: rs[g] == R_FIN -> REACH(4)              /* complete: stays readable (§8.7) */
     :: else -> skip                            /* R_GONE: ignore */
     fi
  fi
}

/* GOAWAY(last): our streams with index >= last were never seen by the peer;
 * they fail with REFUSED_STREAM locally, no RESET is sent (§13.1). */
inline on_ga(p, last, i) {
  ga_r[p] = 1;
  i = 0;
  do
  :: i < NS ->
     if
     :: i >= last && ss[G(p, i)] == S_OPEN -> close_send(G(p, i), S_RST); REACH(8)
     :: else -> skip
     fi;
     i++
  :: else -> break
  od;
  i = 0
}

/* Drain deadline (§13.2): reset every stream that is not closed with CANCEL. */
inline drain(p, i) {
  drained[p] = 1;
  i = 0;
  do
  :: i < NS ->
     if
     :: ss[G(p, i)] == S_OPEN ->
        assert(sent[G(p, i)] > 0);              /* announced before the GOAWAY (§13.1) */
        close_send(G(p, i), S_RST);
        EMIT_RST_O(p, G(p, i));
        REACH(7)
     :: else -> skip
     fi;
     if
     :: rs[G(1 - p, i)] == R_OPEN -> EMIT_RST_A(p, G(1 - p, i)); discard(p, G(1 - p, i)); REACH(7)
     :: else -> skip
     fi;
     i++
  :: else -> break
  od;
  i = 0
}

/* ------------------------------------------------------------ the writer */

/* Write a credit update, or, on the lossy channel, lose it.  When an answer
 * is lost, the sender's probe is no longer outstanding: its backoff timer
 * fires again (prb is the sender's flag for that scope). */
#ifdef LOSSY
#define SEND_CREDIT(p, kind, s, v, answer, prb) \
  if \
  :: ch[p]!kind,s,v \
  :: !(answer) -> REACH(14)                  /* a spontaneous update is lost */ \
  :: (answer) && loss > 0 -> loss--; prb = 0; REACH(15) /* an answer is lost: bounded (README) */ \
  fi
#else
#define SEND_CREDIT(p, kind, s, v, answer, prb) ch[p]!kind,s,v
#endif

/* Write the frame of slot id (dequeued from ctlq[p]), if still due. */
inline send_slot(p, id) {
  if
  :: id < NG ->
     if
     :: OPENER(id) == p -> rst_o[id] = 0
     :: else -> rst_a[id] = 0
     fi;
     ch[p]!RST,id,0
  :: id >= NG && id < 2 * NG && OPENER(id - NG) == p ->
     blk_s[id - NG] = 0;
     if
     :: BLK_S(id - NG) -> ch[p]!BLK,id - NG,0; REACH(17)
     :: else -> prb_s[id - NG] = 0              /* no longer blocked: the probe is moot */
     fi
  :: id >= NG && id < 2 * NG && OPENER(id - NG) != p ->
     if
     :: rs[id - NG] == R_OPEN -> SEND_CREDIT(p, WU, id - NG, wu[id - NG], wua[id - NG], prb_s[id - NG])
     :: else -> skip                            /* receive side finished: no stream update (§6.3) */
     fi;
     wu[id - NG] = 0;
     wua[id - NG] = 0
  :: id == SL_WUC ->
     SEND_CREDIT(p, WU, CONN, wu_c[p], wua_c[p], prb_c[1 - p]);
     wu_c[p] = 0;
     wua_c[p] = 0
  :: id == SL_MS ->
     REACH(11);
#ifdef WU_LOSS_ONLY
     ch[p]!MS,0,ms[p];                          /* only WINDOW_UPDATEs are lost */
#else
     SEND_CREDIT(p, MS, 0, ms[p], msa[p], prb_n[1 - p]);
#endif
     ms[p] = 0;
     msa[p] = 0
  :: id == SL_BLKC ->
     blk_c[p] = 0;
     if
     :: BLK_C(p) -> ch[p]!BLK,CONN,0; REACH(9)
     :: else -> prb_c[p] = 0
     fi
  :: id == SL_BLKN ->
     blk_n[p] = 0;
     if
     :: BLK_N(p) -> ch[p]!BLK,STRS,0; REACH(10)
     :: else -> prb_n[p] = 0
     fi
  :: id == SL_GA ->
     ch[p]!GA,0,ga_slot[p] - 1;
     ga_slot[p] = 0
  fi
}

/* One DATA unit on own stream g: only within both credits (§9.2). */
inline send_data(p, g) {
  assert(sent[g] < lim[g] && sent_c[p] < lim_c[p]);
  if :: len(ch[1 - p]) == CAP -> REACH(16) :: else -> skip fi;
  sent[g]++;
  sent_c[p]++;
  if
  :: sent[g] == DOF(g) -> ch[p]!DATA,g,1; close_send(g, S_DONE)
  :: else -> ch[p]!DATA,g,0
  fi
}

#ifdef CONTROL_BEHIND_DATA
#define DATA_OK(p) (len(ch[p]) < CAP)           /* nothing is held back for control */
#else
#define DATA_OK(p) (len(ch[p]) < CAP && len(ctlq[p]) == 0)   /* every pending control frame first (§10.2) */
#endif

proctype Tx(byte p) {
  byte id;
end:
  do
  :: TXSTEP { len(ch[p]) < CAP && len(ctlq[p]) > 0 -> ctlq[p]?id; send_slot(p, id); id = 0; CHECK() }
  :: STEP { DATA_OK(p) && CAN_DATA(G(p, 0)) -> send_data(p, G(p, 0)); CHECK() }
#if NS >= 2
  :: STEP { DATA_OK(p) && CAN_DATA(G(p, 1)) -> send_data(p, G(p, 1)); CHECK() }
#endif
#if NS >= 3
  :: STEP { DATA_OK(p) && CAN_DATA(G(p, 2)) -> send_data(p, G(p, 2)); CHECK() }
#endif
  od
}

/* ------------------------------------------------------------ the reader (§10.4 item 1: never waits) */

proctype Rx(byte p) {
  mtype k;
  byte s, v, i;
end:
  do
  :: STEP {
       ch[1 - p]?k,s,v ->
       if
       :: k == DATA -> on_data(p, s, v)
       :: k == WU   -> on_wu(p, s, v)
       :: k == MS   -> slim[p] = MAX(slim[p], v); prb_n[p] = 0
       :: k == BLK  -> on_blk(p, s)
       :: k == RST  -> on_rst(p, s)
       :: k == GA   -> on_ga(p, v, i)
       fi;
       k = 0; s = 0; v = 0;
       CHECK()
     }
  od
}

/* ------------------------------------------------------------ the application */

/* Per peer stream: read one unit, stop reading forever, or abandon it.
 * Per own stream: abort it (RESET CANCEL) once announced. */
#ifndef NO_STOP
#define OPT_STOP(g) :: STEP { CAN_STOP(g) && MAY_STOP(g) -> stopped[g] = 1 }
#else
#define OPT_STOP(g)
#endif
#ifndef NO_ABANDON
#define OPT_ABANDON(p, g) :: STEP { CAN_STOP(g) && MAY_ABANDON(g) -> abandon(p, g); CHECK() }
#else
#define OPT_ABANDON(p, g)
#endif
#define APP_READER(p, g) \
  :: STEP { CAN_READ(g) -> read_unit(p, g); CHECK() } \
  OPT_STOP(g) \
  OPT_ABANDON(p, g)
#ifndef NO_ABORT
#define APP_WRITER(p, g) \
  :: STEP { CAN_ABORT(g) && MAY_ABORT(g) -> close_send(g, S_RST); EMIT_RST_O(p, g); CHECK() }
#else
#define APP_WRITER(p, g)
#endif

proctype App(byte p) {
end:
  do
  :: STEP { CAN_OPEN(p) -> ss[G(p, nopen[p])] = S_OPEN; nopen[p]++; CHECK() }
  APP_READER(p, G(1 - p, 0))
  APP_WRITER(p, G(p, 0))
#if NS >= 2
  APP_READER(p, G(1 - p, 1))
  APP_WRITER(p, G(p, 1))
#endif
#if NS >= 3
  APP_READER(p, G(1 - p, 2))
  APP_WRITER(p, G(p, 2))
#endif
  od
}

/* ------------------------------------------------------------ timers: probe, GOAWAY, drain */

/* No real time: "the probe timer may fire" is an action enabled only while
 * the scope is blocked and no probe of it is outstanding (prb_*).  The
 * backoff of §11.2 only spaces probes out; it never stops them.
 *
 * For the liveness run the timer also waits until the answer would raise
 * the sender's limit (USEFUL_*).  A probe answered with the limit the sender
 * already has changes no state, and with an untimed timer such probes could
 * repeat forever, each one written before any DATA (§10.2), starving the
 * sender's DATA in a cycle that weak (per-process) fairness allows but that
 * the real probe interval (>= 1 s, at most 50 per s) excludes.  Removing
 * those no-op cycles hides no stall: a sender that would only be helped by
 * them is stuck in a state where nothing else moves, which the never claim
 * still catches (pan's stutter rule). */
#ifdef PROP_D
#define USEFUL_S(g)  (rs[g] == R_OPEN && MAX(ann[g], rel[g] + SW) > lim[g])
#define USEFUL_C(p)  (MAX(ann_c[1 - p], rel_c[1 - p] + CW) > lim_c[p])
#define USEFUL_N(p)  (MAX(ann_ms[1 - p], C[1 - p] + M) > slim[p])
#else
#define USEFUL_S(g)  1
#define USEFUL_C(p)  1
#define USEFUL_N(p)  1
#endif
#define PROBE_S(p, g) \
  :: STEP { BLK_S(g) && !prb_s[g] && USEFUL_S(g) -> prb_s[g] = 1; EMIT_BLK_S(p, g) }
proctype Timer(byte p) {
  byte i;
end:
  do
#ifndef NO_PROBE
  PROBE_S(p, G(p, 0))
#if NS >= 2
  PROBE_S(p, G(p, 1))
#endif
#if NS >= 3
  PROBE_S(p, G(p, 2))
#endif
  :: STEP { BLK_C(p) && !prb_c[p] && USEFUL_C(p) -> prb_c[p] = 1; EMIT_BLKC(p) }
  :: STEP { BLK_N(p) && !prb_n[p] && USEFUL_N(p) -> prb_n[p] = 1; EMIT_BLKN(p) }
#endif
#ifndef NO_GOAWAY
  /* GOAWAY NO_ERROR: last_stream_id = the peer streams seen so far. */
  :: STEP { CAN_GOAWAY(p) -> ga_s[p] = 1; EMIT_GA(p, SUM(1 - p, SEEN1)) }
  :: STEP { CAN_DRAIN(p) -> drain(p, i); CHECK() }
#endif
#if defined(NO_PROBE) && defined(NO_GOAWAY)
  :: false                                      /* nothing to time: keep the do loop well formed */
#endif
  od
}

/* ------------------------------------------------------------ quiescence checks */

/* A scope whose receiver could grant more than its sender knows. */
#define STUCK_S(g)   (BLK_S(g) && rs[g] == R_OPEN && rel[g] + SW > lim[g])
#define STUCK_C(p)   (BLK_C(p) && rel_c[1 - p] + CW > lim_c[p])
#define STUCK_N(p)   (BLK_N(p) && C[1 - p] + M > slim[p])

/* (a) §10.4: when nothing can move, no frame is left in the transport or in
 * a slot, nobody could send, and no sender waits for credit its receiver
 * could give (the only waits left are the application's). */
#define QUIET_A (len(ch[0]) == 0 && len(ch[1]) == 0 && len(ctlq[0]) == 0 && len(ctlq[1]) == 0 && \
                 !ANY(0, CAN_DATA) && !ANY(1, CAN_DATA) && \
                 !ANY(0, STUCK_S) && !ANY(1, STUCK_S) && !STUCK_C(0) && !STUCK_C(1) && \
                 !STUCK_N(0) && !STUCK_N(1))

/* (c) at rest: the sender knows every limit announced, and the connection
 * window is back to released + window, short of less than one update
 * threshold (§9.5); with no stream live, released == received (§9.7). */
#define LIVE_R(g)    (rs[g] == R_OPEN || rs[g] == R_FIN)
#define REST_C(q)    (lim_c[1 - q] == ann_c[q] && rel_c[q] + CW < ann_c[q] + CW_TH && \
                      (ANY(1 - q, LIVE_R) || rel_c[q] == recv_c[q]))

#if defined(PROP_A) || defined(PROP_C)
active proctype Watchdog() {
  timeout ->
#ifdef PROP_A
  assert(QUIET_A);
#endif
#ifdef PROP_C
  assert(REST_C(0) && REST_C(1));
#endif
  skip
}
#endif

/* ------------------------------------------------------------ (d) liveness */

#ifdef PROP_D
/* Peer p is excused when the other side's application stopped reading one
 * of p's streams: then credit may legitimately never come (§11.4). */
#define STOP1(g)  (stopped[g])
#define EXC(p)    ANY(p, STOP1)
ltl live {
  [] (BLKD(0) -> <> (!BLKD(0) || EXC(0))) &&
  [] (BLKD(1) -> <> (!BLKD(1) || EXC(1)))
}
#endif

/* ------------------------------------------------------------ start */

init {
  byte i;
  atomic {
    i = 0;
    do
    :: i < NG -> lim[i] = SW; ann[i] = SW; i++
    :: else -> break
    od;
    i = 0;
    lim_c[0] = CW; lim_c[1] = CW; ann_c[0] = CW; ann_c[1] = CW;
    slim[0] = M; slim[1] = M; ann_ms[0] = M; ann_ms[1] = M;
#ifdef PROP_D
    /* Plans for the optional events of the streams that exist. */
    i = 0;
    do
    :: i < NG && IDX(i) < NOPEN(OPENER(i)) ->
#ifndef NO_STOP
       if :: plan_r[i] = 1 :: skip fi;
#endif
#ifndef NO_ABANDON
       if :: plan_r[i] == 0 -> plan_r[i] = 2 :: skip fi;
#endif
#ifndef NO_ABORT
       if :: plan_w[i] = 1 :: skip fi;
#endif
       i++
    :: i < NG && IDX(i) >= NOPEN(OPENER(i)) -> i++
    :: else -> break
    od;
    i = 0;
#ifndef NO_GOAWAY
    if :: plan_ga[0] = 1 :: skip fi;
    if :: plan_ga[1] = 1 :: skip fi;
#endif
#endif
    run Rx(0); run Rx(1);
    run Tx(0); run Tx(1);
    run App(0); run App(1);
    run Timer(0); run Timer(1)
  }
}
