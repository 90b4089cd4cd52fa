/*
 * host.c: a small recommender host written in C11 against groupwise's C ABI.
 *
 * What a host does with groupwise, end to end, on MovieLens 100K:
 *
 *   1. read the interactions and group each user's movies in time order;
 *   2. open an engine with the reference sequence encoder (64-d embeddings);
 *   3. upsert every user from their history (the encoder runs in the engine);
 *   4. expand a seed segment (Star Trek fans) into lookalike users;
 *   5. build the segments and print each one's profile;
 *   6. serve slates: the host proposes candidates with its own scores (item
 *      popularity), groupwise picks the slate, simulated users click, the
 *      clicks go back as feedback;
 *   7. save a snapshot, load it back, and check the answers are identical.
 *
 * Every call's result is checked: on failure the program prints the code's
 * name and the thread's last-error message, and exits with status 1.
 *
 * Build (from the repository root; see examples/c/README.md):
 *   cargo build --release -p groupwise-ffi
 *   gcc -std=c11 -Wall -Wextra -Werror -Iffi/include examples/c/host.c \
 *       -Ltarget/release -lgroupwise -Wl,-rpath,"$PWD/target/release" -o host
 * Run:
 *   ./host [ml-100k.inter] [model.onnx]
 *   (defaults: .groupwise/data/ml-100k/ml-100k.inter models/ml100k-seq.onnx,
 *   installed by scripts/setup.sh; ONNX Runtime is found in .groupwise/lib)
 */
#define _XOPEN_SOURCE 700 /* realpath, mkdtemp */

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "groupwise.h"

/* ---- error handling --------------------------------------------------- */

/* Prints what failed, the result's name and the last-error message, exits. */
static void die(const char *what, gw_result rc) {
    char message[1024];
    size_t needed = 0;
    /* A fixed buffer is enough here: a longer message arrives truncated. */
    gw_last_error_message(message, sizeof message, &needed);
    fprintf(stderr, "host: %s failed: %s: %s\n", what, gw_result_name(rc), message);
    exit(1);
}

/* Calls a groupwise function; anything but GW_OK ends the program. */
#define TRY(call)                          \
    do {                                   \
        gw_result rc_ = (call);            \
        if (rc_ != GW_OK) die(#call, rc_); \
    } while (0)

static void *xmalloc(size_t n) {
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        fprintf(stderr, "host: out of memory\n");
        exit(1);
    }
    return p;
}

/* ---- the data: MovieLens 100K interactions ---------------------------- */

typedef struct {
    uint32_t user, item, rating;
    uint64_t time;
} rating_row;

typedef struct {
    rating_row *rows;    /* sorted by user, then time */
    size_t n_rows;
    uint32_t max_user;   /* users are 1..max_user */
    uint32_t max_item;   /* items are 1..max_item */
    size_t *first;       /* rows of user u: first[u] .. first[u + 1] - 1 */
    uint8_t *liked;      /* liked[u * (max_item + 1) + i]: u rated i >= 4 */
    double *popularity;  /* ratings per item, divided by the most rated one's */
} dataset;

static int by_user_then_time(const void *a, const void *b) {
    const rating_row *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

/* Reads `user_id<TAB>item_id<TAB>rating<TAB>timestamp` lines after a header. */
static void load_interactions(const char *path, dataset *d) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "host: cannot open %s (run scripts/setup.sh)\n", path);
        exit(1);
    }
    char line[256];
    size_t capacity = 1 << 17;
    memset(d, 0, sizeof *d);
    d->rows = xmalloc(capacity * sizeof *d->rows);
    if (fgets(line, sizeof line, f) == NULL) { /* the header line */
        fprintf(stderr, "host: %s is empty\n", path);
        exit(1);
    }
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned user, item;
        double rating, time;
        if (sscanf(line, "%u\t%u\t%lf\t%lf", &user, &item, &rating, &time) != 4) {
            fprintf(stderr, "host: %s: malformed line: %s", path, line);
            exit(1);
        }
        if (d->n_rows == capacity) {
            capacity *= 2;
            rating_row *grown = realloc(d->rows, capacity * sizeof *d->rows);
            if (grown == NULL) exit(1);
            d->rows = grown;
        }
        d->rows[d->n_rows++] =
            (rating_row){user, item, (uint32_t)rating, (uint64_t)time};
        if (user > d->max_user) d->max_user = user;
        if (item > d->max_item) d->max_item = item;
    }
    fclose(f);
    qsort(d->rows, d->n_rows, sizeof *d->rows, by_user_then_time);

    /* Per-user row ranges, "liked" flags and item popularity. */
    size_t stride = (size_t)d->max_item + 1;
    d->first = calloc((size_t)d->max_user + 2, sizeof *d->first);
    d->liked = calloc(((size_t)d->max_user + 1) * stride, 1);
    d->popularity = calloc(stride, sizeof *d->popularity);
    if (d->first == NULL || d->liked == NULL || d->popularity == NULL) exit(1);
    double most = 1.0;
    for (size_t r = 0; r < d->n_rows; r++) {
        const rating_row *row = &d->rows[r];
        d->first[row->user + 1] = r + 1;
        if (row->rating >= 4) d->liked[row->user * stride + row->item] = 1;
        d->popularity[row->item] += 1.0;
        if (d->popularity[row->item] > most) most = d->popularity[row->item];
    }
    for (uint32_t u = 1; u <= d->max_user + 1; u++) {
        if (d->first[u] < d->first[u - 1]) d->first[u] = d->first[u - 1]; /* no rows */
    }
    for (size_t i = 0; i < stride; i++) d->popularity[i] /= most; /* into [0, 1] */
}

static void free_dataset(dataset *d) {
    free(d->rows);
    free(d->first);
    free(d->liked);
    free(d->popularity);
}

/* ---- a deterministic random generator (xorshift64*) ------------------- */

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static double rng_uniform(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

/* ---- the host ---------------------------------------------------------- */

/* Writes `s` into a JSON string literal (quotes and backslashes escaped). */
static void json_string(char *out, size_t len, const char *s) {
    size_t o = 0;
    out[o++] = '"';
    for (; *s != '\0' && o + 3 < len; s++) {
        if (*s == '"' || *s == '\\') out[o++] = '\\';
        out[o++] = *s;
    }
    out[o++] = '"';
    out[o] = '\0';
}

int main(int argc, char **argv) {
    const char *inter_path = argc > 1 ? argv[1] : ".groupwise/data/ml-100k/ml-100k.inter";
    const char *model_arg = argc > 2 ? argv[2] : "models/ml100k-seq.onnx";

    dataset data;
    load_interactions(inter_path, &data);
    printf("groupwise %s: %zu ratings, %u users, %u movies\n", gw_version(), data.n_rows,
           data.max_user, data.max_item);

    /* 1. The engine. A snapshot stores the encoder path as written in the
     * config and re-opens it on load, so an absolute path keeps the snapshot
     * loadable from any working directory. */
    char model[PATH_MAX];
    if (realpath(model_arg, model) == NULL) {
        fprintf(stderr, "host: model %s not found (run scripts/setup.sh)\n", model_arg);
        return 1;
    }
    char model_json[2 * PATH_MAX + 3];
    json_string(model_json, sizeof model_json, model);
    char config[sizeof model_json + 128];
    int config_len = snprintf(config, sizeof config,
                              "{\"dim\": 64,"
                              " \"encoders\": [{\"name\": \"seq\", \"path\": %s}],"
                              " \"segments\": {\"min_size\": 30}}",
                              model_json);
    gw_engine *engine = NULL;
    TRY(gw_engine_open_json(config, (size_t)config_len, &engine));

    /* 2. Every user, from their movies in time order (the encoder keeps the
     * most recent ones). Before segments are built, no segment is assigned. */
    uint64_t *history = xmalloc((data.max_item + 1) * sizeof *history);
    for (uint32_t u = 1; u <= data.max_user; u++) {
        size_t n = 0;
        for (size_t r = data.first[u]; r < data.first[u + 1]; r++) history[n++] = data.rows[r].item;
        if (n == 0) continue;
        int64_t segment = 0;
        TRY(gw_engine_upsert_sequence(engine, "seq", u, history, n, &segment));
        if (segment != GW_NO_SEGMENT) die("a segment before the first build", GW_ERR_OTHER);
    }

    /* 3. Lookalike: seeds are the users who liked (>= 4 stars) two or more
     * Star Trek films; expand them by 50 users. */
    static const uint32_t star_trek[] = {222, 227, 228, 229, 230, 380, 449, 450};
    const size_t n_trek = sizeof star_trek / sizeof star_trek[0];
    size_t stride = (size_t)data.max_item + 1;
    uint64_t *seeds = xmalloc(data.max_user * sizeof *seeds);
    size_t n_seeds = 0;
    for (uint32_t u = 1; u <= data.max_user; u++) {
        size_t liked = 0;
        for (size_t t = 0; t < n_trek; t++) liked += data.liked[u * stride + star_trek[t]];
        if (liked >= 2) seeds[n_seeds++] = u;
    }
    enum { EXPAND = 50 };
    uint64_t found[EXPAND];
    double found_scores[EXPAND];
    size_t n_found = 0;
    TRY(gw_engine_lookalike(engine, seeds, n_seeds, NULL, 0, GW_SIZE_COUNT, EXPAND,
                            GW_SCORER_CLASSIFIER, found, found_scores, EXPAND, &n_found));
    /* How many lookalikes rated any Star Trek film, against all non-seeds. */
    size_t trek_found = 0, trek_rest = 0;
    for (uint32_t u = 1; u <= data.max_user; u++) {
        bool rated = false;
        for (size_t r = data.first[u]; r < data.first[u + 1] && !rated; r++)
            for (size_t t = 0; t < n_trek; t++) rated = rated || data.rows[r].item == star_trek[t];
        bool seed = false;
        for (size_t s = 0; s < n_seeds && !seed; s++) seed = seeds[s] == u;
        if (seed || !rated) continue;
        trek_rest++;
        for (size_t k = 0; k < n_found; k++) trek_found += found[k] == u;
    }
    printf("lookalike: %zu Star Trek seeds -> %zu users; top: ", n_seeds, n_found);
    for (size_t k = 0; k < 5 && k < n_found; k++)
        printf("%llu (%.2f)%s", (unsigned long long)found[k], found_scores[k], k < 4 ? ", " : "\n");
    printf("  %zu of them rated Star Trek (%.0f%%; %.0f%% of all %zu non-seeds)\n", trek_found,
           100.0 * (double)trek_found / (double)n_found,
           100.0 * (double)trek_rest / (double)(data.max_user - n_seeds),
           (size_t)(data.max_user - n_seeds));

    /* 4. Segments, then their ids with the size query (ask, allocate, read). */
    size_t n_segments = 0;
    TRY(gw_engine_build_segments(engine, &n_segments));
    size_t n_ids = 0;
    gw_result rc = gw_engine_segment_ids(engine, NULL, 0, &n_ids);
    if (rc != GW_OK && rc != GW_ERR_BUFFER_TOO_SMALL) die("gw_engine_segment_ids (size)", rc);
    uint32_t *segment_ids = xmalloc(n_ids * sizeof *segment_ids);
    TRY(gw_engine_segment_ids(engine, segment_ids, n_ids, &n_ids));
    printf("segments: %zu (privacy floor 30)\n", n_segments);
    for (size_t s = 0; s < n_ids; s++) {
        gw_segment_profile profile;
        uint64_t reps[3];
        size_t n_reps = 0;
        /* Only the 3 most central members: a too-small buffer would be
         * GW_ERR_BUFFER_TOO_SMALL, so ask for the count first. */
        rc = gw_engine_segment_profile(engine, segment_ids[s], &profile, NULL, 0, &n_reps);
        if (rc != GW_OK && rc != GW_ERR_BUFFER_TOO_SMALL) die("gw_engine_segment_profile", rc);
        uint64_t *all_reps = xmalloc(n_reps * sizeof *all_reps);
        TRY(gw_engine_segment_profile(engine, segment_ids[s], &profile, all_reps, n_reps, &n_reps));
        for (size_t k = 0; k < 3; k++) reps[k] = k < n_reps ? all_reps[k] : 0;
        free(all_reps);
        printf("  segment %2u: %3zu users, cohesion %.3f, central users %llu %llu %llu\n",
               profile.id, profile.size, profile.cohesion, (unsigned long long)reps[0],
               (unsigned long long)reps[1], (unsigned long long)reps[2]);
    }

    /* 5. Slates. The host proposes 100 candidates among the 300 most rated
     * movies, scored by popularity in [0, 1]; groupwise picks 5 (the user's
     * segment is filled in by the engine). A simulated user scans the slate
     * top-down and clicks a movie they liked with probability 0.6 (others
     * 0.02), stopping at the first click. */
    enum { SLATES = 3000, SLATE = 5, CANDIDATES = 100, POOL = 300 };
    uint32_t pool[POOL]; /* the POOL most rated items */
    for (size_t p = 0; p < POOL; p++) {
        uint32_t best = 0;
        for (uint32_t i = 1; i <= data.max_item; i++) {
            bool taken = false;
            for (size_t q = 0; q < p && !taken; q++) taken = pool[q] == i;
            if (!taken && (best == 0 || data.popularity[i] > data.popularity[best])) best = i;
        }
        pool[p] = best;
    }
    uint64_t candidates[CANDIDATES];
    float host_scores[CANDIDATES];
    uint64_t slate[SLATE];
    double values[SLATE];
    size_t clicks_by_half[2] = {0, 0};
    for (size_t n = 0; n < SLATES; n++) {
        uint32_t user = 1 + (uint32_t)(rng_next() % data.max_user);
        for (size_t c = 0; c < CANDIDATES; c++) {
            candidates[c] = pool[rng_next() % POOL]; /* duplicates are ignored */
            host_scores[c] = (float)data.popularity[candidates[c]];
        }
        gw_slate_request request = {0};
        request.user = user;
        request.has_user = true;
        request.candidates = candidates;
        request.n_candidates = CANDIDATES;
        request.host_scores = host_scores;
        request.n_host_scores = CANDIDATES;
        request.slate_size = SLATE;
        request.policy = GW_POLICY_IN_SLATE_TS;
        request.now = (double)n * 60.0; /* one slate a minute */
        request.has_now = true;
        size_t len = 0;
        uint64_t decision = 0;
        TRY(gw_engine_decide(engine, &request, slate, values, SLATE, &len, &decision));

        size_t clicked[1];
        size_t n_clicked = 0;
        for (size_t s = 0; s < len && n_clicked == 0; s++) {
            double p = data.liked[user * stride + slate[s]] ? 0.6 : 0.02;
            if (rng_uniform() < p) clicked[n_clicked++] = s;
        }
        /* The whole slate was shown: `len` visible slots. */
        double now = request.now + 10.0;
        TRY(gw_engine_feedback(engine, decision, clicked, n_clicked, len, &now));
        clicks_by_half[n >= SLATES / 2] += n_clicked;
    }
    struct gw_engine_stats stats;
    TRY(gw_engine_get_stats(engine, &stats));
    printf("slates: %llu decisions, %llu feedback, %llu clicks on %llu impressions\n",
           (unsigned long long)stats.decisions, (unsigned long long)stats.feedback_applied,
           (unsigned long long)stats.clicks, (unsigned long long)stats.impressions);
    printf("  click rate per slate: %.3f in the first half, %.3f in the second\n",
           (double)clicks_by_half[0] / (SLATES / 2), (double)clicks_by_half[1] / (SLATES / 2));
    printf("stats: %zu users, %zu segments, %zu encoder, %llu upserts, %llu lookalike\n",
           stats.users, stats.segments, stats.encoders, (unsigned long long)stats.upserts,
           (unsigned long long)stats.lookalikes);

    /* 6. Snapshot: save, inspect, load (re-opening the encoder), compare. */
    char dir[] = "/tmp/groupwise-host-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("host: mkdtemp");
        return 1;
    }
    char path[sizeof dir + 16];
    snprintf(path, sizeof path, "%s/engine.gw", dir);
    TRY(gw_engine_save(engine, path));
    gw_snapshot_info info;
    TRY(gw_snapshot_inspect(path, &info));
    printf("snapshot: %llu bytes, format %u, %zu users, %zu segments, %llu feedback\n",
           (unsigned long long)info.bytes, info.version, info.users, info.segments,
           (unsigned long long)info.feedback_applied);
    gw_engine *loaded = NULL;
    TRY(gw_engine_load(path, true, &loaded));

    size_t mismatches = 0;
    for (uint32_t u = 1; u <= data.max_user; u++) {
        uint32_t a = 0, b = 0;
        TRY(gw_engine_segment_of(engine, u, &a));
        TRY(gw_engine_segment_of(loaded, u, &b));
        mismatches += a != b;
    }
    static const uint64_t probes[] = {1, 50, 405, 655, 943};
    for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
        uint64_t ids_a[10], ids_b[10];
        float sims_a[10], sims_b[10];
        size_t len_a = 0, len_b = 0;
        TRY(gw_engine_neighbors(engine, probes[p], 10, ids_a, sims_a, 10, &len_a));
        TRY(gw_engine_neighbors(loaded, probes[p], 10, ids_b, sims_b, 10, &len_b));
        mismatches += len_a != len_b || memcmp(ids_a, ids_b, len_a * sizeof ids_a[0]) != 0 ||
                      memcmp(sims_a, sims_b, len_a * sizeof sims_a[0]) != 0;
    }
    struct gw_engine_stats loaded_stats;
    TRY(gw_engine_get_stats(loaded, &loaded_stats));
    mismatches += loaded_stats.users != stats.users || loaded_stats.segments != stats.segments ||
                  loaded_stats.feedback_applied != stats.feedback_applied ||
                  loaded_stats.clicks != stats.clicks || loaded_stats.encoders != 1;

    /* The reloaded engine encodes new users: a Star Trek fan lands in a segment. */
    uint64_t fan[] = {222, 227, 228, 229, 230, 449};
    int64_t fan_segment = GW_NO_SEGMENT;
    TRY(gw_engine_upsert_sequence(loaded, "seq", 100000, fan, sizeof fan / sizeof fan[0],
                                  &fan_segment));
    printf("reloaded: %s (segments of %u users, neighbours of %zu users, counters); "
           "a new Star Trek fan joins segment %lld\n",
           mismatches == 0 ? "identical" : "DIFFERENT", data.max_user,
           sizeof probes / sizeof probes[0], (long long)fan_segment);

    gw_engine_free(loaded);
    gw_engine_free(engine);
    remove(path);
    rmdir(dir);
    free(segment_ids);
    free(seeds);
    free(history);
    free_dataset(&data);
    if (mismatches != 0 || fan_segment == GW_NO_SEGMENT) {
        fprintf(stderr, "host: the reloaded engine differs (%zu mismatches)\n", mismatches);
        return 1;
    }
    return 0;
}
