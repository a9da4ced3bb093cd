/* The streamed-chat reader in C: an HTTP/1.1 answer's raw socket bytes in, SSE timings out.
 *
 * One object per load worker, reset per request. ``read(data, now)`` takes one socket read: it
 * parses the status line and headers, unframes the body (chunked, content-length or until close),
 * normalises SSE line endings (CRLF and lone CR become LF) and scans the read's complete events,
 * all without a Python call per HTTP chunk or per event. The scan is a port of
 * ``StreamTimes.feed`` in stream.py, step for step (the same regular expressions written as byte
 * loops, the same order of key searches), so the two give the same timings, pieces and events;
 * tests/unit/harness/test_sse_reader.py checks that on random streams. stream.py documents what
 * each figure means; this file only says how it is found.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define HEAD_MAX (64 * 1024)

enum phase {
    P_HEAD,       /* status line and headers */
    P_SIZE,       /* a chunk's size line */
    P_EXT,        /* a chunk extension, up to the end of its line */
    P_SIZE_LF,    /* the LF after a size line's CR */
    P_DATA,       /* a chunk's data */
    P_DATA_CR,    /* the CRLF after a chunk's data */
    P_DATA_LF,
    P_TRL_START,  /* a trailer line's first byte (an empty line ends the answer) */
    P_TRL,        /* inside a trailer line */
    P_TRL_LF,     /* the LF of the closing empty line */
    P_LENGTH,     /* a content-length body */
    P_EOF,        /* a body that ends when the connection closes */
    P_DONE,
};

/* Token counts of content pieces, shared by a run's readers (StreamBook fills it from the local
 * tokenizer): open addressing on FNV-1a, the keys in one arena, so a lookup from the scan needs no
 * Python object. */
typedef struct {
    uint64_t hash;
    Py_ssize_t off, len;
    long count; /* -1: an empty slot */
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    Py_ssize_t cap, used; /* cap: a power of two */
    char *arena;
    Py_ssize_t arena_len, arena_cap;
    /* Summed over the streams SSEReader.fill wrote since StreamBook's last pass (take_sums). */
    long long zeros, compared, mismatched, output;
} PieceCounts;

static PyTypeObject PieceCountsType;

typedef struct {
    PyObject_HEAD
    double now, first_byte, first_output, first_content, last_content;
    /* The content events: time (ms), token count (-1 unknown) and text (in arena). */
    double *ev_ms;
    long *ev_tok;
    Py_ssize_t *ev_off, *ev_len;
    Py_ssize_t n_ev, ev_cap, misses;
    char *arena;
    Py_ssize_t arena_len, arena_cap;
    PieceCounts *counts; /* or NULL: no local token counts */
    PyObject *usage, *explanation, *error; /* bytes, or NULL for None */
    int status;
    char keep_alive;
    int phase, after_cr, version_minor;
    long long remaining; /* chunk or content-length bytes still to come */
    int size_digits;
    char *head;
    Py_ssize_t head_len, head_cap;
    char *buf; /* body bytes not yet scanned: the pending event, then this read's */
    Py_ssize_t len, cap;
} Reader;

/* --- small byte helpers ------------------------------------------------------------------ */

static int is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); } /* sre's \s */

/* Whether a[2:k] == key[2:k]: a byte loop, since a candidate mostly differs at its third byte
 * ("choices" against "content") and a memcmp call costs more than the compare. */
static inline int same_rest(const char *a, const char *key, Py_ssize_t k)
{
    for (Py_ssize_t j = 2; j < k; j++) {
        if (a[j] != key[j]) return 0;
    }
    return 1;
}

/* bytes.find(key, start, end) for keys of 2 bytes or more. Every key searched here begins with a
 * byte pair that is rare in an SSE body (a quote and a letter, CRLF, a blank line): 16 bytes at a
 * time, places where the pair occurs are the only ones worth a memcmp. glibc's memmem had been ~40%
 * of a read where this first served "content" alone, and its set-up per call still ~7% for the
 * short ranges of the other keys. */
static Py_ssize_t find(const char *b, Py_ssize_t start, Py_ssize_t end, const char *key, Py_ssize_t k)
{
    Py_ssize_t i = start < 0 ? 0 : start;
#ifdef __SSE2__
    const __m128i k0 = _mm_set1_epi8(key[0]), k1 = _mm_set1_epi8(key[1]);
    for (; i + 17 <= end; i += 16) {
        __m128i at = _mm_loadu_si128((const __m128i *)(b + i));
        __m128i next = _mm_loadu_si128((const __m128i *)(b + i + 1));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(at, k0), _mm_cmpeq_epi8(next, k1)));
        for (; m; m &= m - 1) {
            Py_ssize_t p = i + __builtin_ctz(m);
            if (p + k <= end && same_rest(b + p, key, k)) return p;
        }
    }
#endif
    for (; i + k <= end; i++) {
        if (b[i] == key[0] && b[i + 1] == key[1] && same_rest(b + i, key, k)) return i;
    }
    return -1;
}

static Py_ssize_t rfind(const char *b, Py_ssize_t start, Py_ssize_t end, const char *key, Py_ssize_t k)
{
    for (Py_ssize_t i = end - k; i >= start; i--) {
        if (b[i] == key[0] && memcmp(b + i, key, (size_t)k) == 0) return i;
    }
    return -1;
}

static const char *last_lf(const char *b, Py_ssize_t n)
{
#ifdef __GLIBC__
    return memrchr(b, '\n', (size_t)n);
#else
    while (n-- > 0) {
        if (b[n] == '\n') return b + n;
    }
    return NULL;
#endif
}

/* bytes.rfind(b"\n\n", 0, end): a last LF, then a look at the byte before it. */
static Py_ssize_t rfind_blank(const char *b, Py_ssize_t end)
{
    while (end >= 2) {
        const char *p = last_lf(b, end);
        if (!p) return -1;
        Py_ssize_t i = p - b;
        if (i >= 1 && b[i - 1] == '\n') return i - 1;
        end = i; /* the next candidate ends before this LF */
    }
    return -1;
}

static Py_ssize_t skip_space(const char *b, Py_ssize_t i, Py_ssize_t end)
{
    while (i < end && is_space((unsigned char)b[i])) i++;
    return i;
}

static int grow(char **p, Py_ssize_t *cap, Py_ssize_t need)
{
    if (need <= *cap) return 0;
    Py_ssize_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need) cap2 *= 2;
    char *q = PyMem_Realloc(*p, (size_t)cap2);
    if (!q) {
        PyErr_NoMemory();
        return -1;
    }
    *p = q;
    *cap = cap2;
    return 0;
}

/* Body bytes into buf with SSE line endings made LF: a CRLF pair (also one split across reads or
 * chunks) and a lone CR each become one LF, as StreamTimes.feed does with bytes.replace. */
static int append_body(Reader *r, const char *s, Py_ssize_t n)
{
    if (n <= 0) return 0;
    if (grow(&r->buf, &r->cap, r->len + n) < 0) return -1;
    char *out = r->buf + r->len;
    Py_ssize_t i = 0;
    if (r->after_cr && s[0] == '\n') i = 1;
    const char *cr = memchr(s + i, '\r', (size_t)(n - i));
    if (!cr) { /* the common case: no CR, one copy */
        memcpy(out, s + i, (size_t)(n - i));
        r->len += n - i;
        r->after_cr = 0;
        return 0;
    }
    Py_ssize_t o = 0;
    for (; i < n; i++) {
        char c = s[i];
        if (c == '\r') {
            out[o++] = '\n';
            if (i + 1 < n && s[i + 1] == '\n') i++;
        } else {
            out[o++] = c;
        }
    }
    r->len += o;
    r->after_cr = s[n - 1] == '\r';
    return 0;
}

/* --- JSON string unescaping (what orjson.loads of the quoted piece gives, else NULL) --------- */

static int hex4(const unsigned char *s, unsigned *v)
{
    unsigned x = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = s[k];
        x <<= 4;
        if (c >= '0' && c <= '9') x |= c - '0';
        else if (c >= 'a' && c <= 'f') x |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') x |= c - 'A' + 10;
        else return -1;
    }
    *v = x;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (strict: no overlongs, surrogates or > U+10FFFF), or 0. */
static int utf8_len(const unsigned char *s, Py_ssize_t left)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return left >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (left < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] >= 0xA0) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (left < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* The JSON string body p[0:n] decoded into o (never longer than n); -1 where it is not a valid
 * JSON string body (orjson would refuse it), and the caller keeps the raw piece. */
static Py_ssize_t unescape_into(const char *p, Py_ssize_t n, char *out)
{
    char *o = out;
    const unsigned char *s = (const unsigned char *)p;
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '\\') {
            if (i + 1 >= n) return -1;
            unsigned char e = s[i + 1];
            i += 2;
            switch (e) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/': *o++ = '/'; break;
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (i + 4 > n || hex4(s + i, &cp) < 0) return -1;
                i += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u' || hex4(s + i + 2, &lo) < 0) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return -1;
                    i += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                o = put_utf8(o, cp);
                break;
            }
            default:
                return -1;
            }
        } else if (c < 0x20) {
            return -1;
        } else {
            int k = utf8_len(s + i, n - i);
            if (!k) return -1;
            memcpy(o, s + i, (size_t)k);
            o += k;
            i += k;
        }
    }
    return o - out;
}

/* --- the piece counts table --------------------------------------------------------------------- */

static uint64_t fnv1a(const char *p, Py_ssize_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static long table_get(PieceCounts *t, const char *p, Py_ssize_t n)
{
    if (!t->used) return -1;
    uint64_t h = fnv1a(p, n);
    Py_ssize_t mask = t->cap - 1;
    for (Py_ssize_t i = (Py_ssize_t)(h & (uint64_t)mask);; i = (i + 1) & mask) {
        Slot *sl = &t->slots[i];
        if (sl->count < 0) return -1;
        if (sl->hash == h && sl->len == n && memcmp(t->arena + sl->off, p, (size_t)n) == 0) return sl->count;
    }
}

static int table_put(PieceCounts *t, const char *p, Py_ssize_t n, long count)
{
    if ((t->used + 1) * 2 > t->cap) { /* at most half full */
        Py_ssize_t cap2 = t->cap ? t->cap * 2 : 1024;
        Slot *s2 = PyMem_Malloc(sizeof(Slot) * (size_t)cap2);
        if (!s2) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < cap2; i++) s2[i].count = -1;
        for (Py_ssize_t i = 0; i < t->cap; i++) {
            Slot *sl = &t->slots[i];
            if (sl->count < 0) continue;
            Py_ssize_t j = (Py_ssize_t)(sl->hash & (uint64_t)(cap2 - 1));
            while (s2[j].count >= 0) j = (j + 1) & (cap2 - 1);
            s2[j] = *sl;
        }
        PyMem_Free(t->slots);
        t->slots = s2;
        t->cap = cap2;
    }
    uint64_t h = fnv1a(p, n);
    Py_ssize_t mask = t->cap - 1;
    Py_ssize_t i = (Py_ssize_t)(h & (uint64_t)mask);
    for (;; i = (i + 1) & mask) {
        Slot *sl = &t->slots[i];
        if (sl->count < 0) break;
        if (sl->hash == h && sl->len == n && memcmp(t->arena + sl->off, p, (size_t)n) == 0) {
            sl->count = count;
            return 0;
        }
    }
    if (grow(&t->arena, &t->arena_cap, t->arena_len + n + 1) < 0) return -1;
    memcpy(t->arena + t->arena_len, p, (size_t)n);
    t->slots[i] = (Slot){h, t->arena_len, n, count};
    t->arena_len += n;
    t->used++;
    return 0;
}

/* --- the SSE scan: StreamTimes.feed, step for step ------------------------------------------ */

#define KEY(s) s, (Py_ssize_t)(sizeof(s) - 1)

/* _PIECES at i (where "content" starts): the string body's bounds, or 0. */
static int match_piece(const char *b, Py_ssize_t i, Py_ssize_t end, Py_ssize_t *s, Py_ssize_t *e)
{
    i = skip_space(b, i + 9, end);
    if (i >= end || b[i] != ':') return 0;
    i = skip_space(b, i + 1, end);
    if (i >= end || b[i] != '"') return 0;
    Py_ssize_t start = ++i;
    while (i < end) {
        char c = b[i];
        if (c == '"') {
            if (i == start) return 0; /* "content": "" is role-only, not a piece */
            *s = start;
            *e = i;
            return 1;
        }
        if (c == '\\') {
            if (i + 1 >= end || b[i + 1] == '\n') return 0; /* sre's '.' stops at a newline */
            i += 2;
        } else {
            i++;
        }
    }
    return 0;
}

/* _OTHER_OUTPUT.search: reasoning text, or a tool call, anywhere in the event. */
static int other_output(const char *ev, Py_ssize_t n)
{
    for (Py_ssize_t i = find(ev, 0, n, KEY("\"reasoning")); i >= 0; i = find(ev, i + 1, n, KEY("\"reasoning"))) {
        Py_ssize_t j = i + 10;
        if (j + 9 <= n && memcmp(ev + j, "_content\"", 9) == 0) j += 9;
        else if (j < n && ev[j] == '"') j += 1;
        else continue;
        j = skip_space(ev, j, n);
        if (j >= n || ev[j] != ':') continue;
        j = skip_space(ev, j + 1, n);
        if (j + 1 < n && ev[j] == '"' && ev[j + 1] != '"') return 1;
    }
    for (Py_ssize_t i = find(ev, 0, n, KEY("\"tool_calls\"")); i >= 0;
         i = find(ev, i + 1, n, KEY("\"tool_calls\""))) {
        Py_ssize_t j = skip_space(ev, i + 12, n);
        if (j >= n || ev[j] != ':') continue;
        j = skip_space(ev, j + 1, n);
        if (j >= n || ev[j] != '[') continue;
        j = skip_space(ev, j + 1, n);
        if (j < n && ev[j] == '{') return 1;
    }
    return 0;
}

/* _ERROR.match: the event's data is an object whose first key is "error". */
static int is_error(const char *ev, Py_ssize_t n)
{
    if (n < 5 || memcmp(ev, "data:", 5) != 0) return 0;
    Py_ssize_t j = skip_space(ev, 5, n);
    if (j >= n || ev[j] != '{') return 0;
    j = skip_space(ev, j + 1, n);
    if (j + 7 > n || memcmp(ev + j, "\"error\"", 7) != 0) return 0;
    j = skip_space(ev, j + 7, n);
    return j < n && ev[j] == ':';
}

/* _USAGE.search: a "usage" key holding an object (not null). */
static int has_usage(const char *ev, Py_ssize_t n)
{
    for (Py_ssize_t i = find(ev, 0, n, KEY("\"usage\"")); i >= 0; i = find(ev, i + 1, n, KEY("\"usage\""))) {
        Py_ssize_t j = skip_space(ev, i + 7, n);
        if (j >= n || ev[j] != ':') continue;
        j = skip_space(ev, j + 1, n);
        if (j < n && ev[j] == '{') return 1;
    }
    return 0;
}

/* _payload: the JSON after "data:". */
static PyObject *payload(const char *ev, Py_ssize_t n)
{
    if (n >= 6 && memcmp(ev, "data: ", 6) == 0) return PyBytes_FromStringAndSize(ev + 6, n - 6);
    Py_ssize_t j = skip_space(ev, 0, n);
    if (j + 5 <= n && memcmp(ev + j, "data:", 5) == 0) {
        j = skip_space(ev, j + 5, n);
        return PyBytes_FromStringAndSize(ev + j, n - j);
    }
    return PyBytes_FromStringAndSize(ev, n);
}

static int set_bytes(PyObject **slot, PyObject *v)
{
    if (!v) return -1;
    Py_XSETREF(*slot, v);
    return 0;
}

/* StreamTimes._output or ._closing on one event. */
static int seen(Reader *r, const char *ev, Py_ssize_t n, int closing)
{
    if (!closing) {
        if (!r->first_output && other_output(ev, n)) r->first_output = r->now;
        return 0;
    }
    if (is_error(ev, n)) {
        if (set_bytes(&r->error, payload(ev, n)) < 0) return -1;
    } else if (find(ev, 0, n, KEY("\"explanation\"")) >= 0) {
        if (set_bytes(&r->explanation, payload(ev, n)) < 0) return -1;
    }
    if (has_usage(ev, n) && set_bytes(&r->usage, PyBytes_FromStringAndSize(ev, n)) < 0) return -1;
    return 0;
}

/* StreamTimes._each: ``seen`` for every event of buf[:end] naming key, the first at i. */
static int each(Reader *r, Py_ssize_t end, const char *key, Py_ssize_t k, Py_ssize_t i, int closing)
{
    const char *b = r->buf;
    while (i >= 0) {
        Py_ssize_t start = rfind_blank(b, i);
        start = start >= 0 ? start + 2 : 0;
        Py_ssize_t stop = find(b, i, end + 2, KEY("\n\n"));
        if (stop < 0) stop = end;
        if (seen(r, b + start, stop - start, closing) < 0) return -1;
        i = find(b, stop, end, key, k);
    }
    return 0;
}

/* One content event: its text (decoded where it holds an escape) into the arena, its time, and
 * its token count when the shared table knows the text. */
static int add_event(Reader *r, const char *p, Py_ssize_t n, int decode)
{
    if (r->n_ev == r->ev_cap) {
        Py_ssize_t cap2 = r->ev_cap ? r->ev_cap * 2 : 128;
        double *ms = PyMem_Realloc(r->ev_ms, sizeof(double) * (size_t)cap2);
        if (ms) r->ev_ms = ms;
        long *tok = PyMem_Realloc(r->ev_tok, sizeof(long) * (size_t)cap2);
        if (tok) r->ev_tok = tok;
        Py_ssize_t *off = PyMem_Realloc(r->ev_off, sizeof(Py_ssize_t) * (size_t)cap2);
        if (off) r->ev_off = off;
        Py_ssize_t *len = PyMem_Realloc(r->ev_len, sizeof(Py_ssize_t) * (size_t)cap2);
        if (len) r->ev_len = len;
        if (!ms || !tok || !off || !len) {
            PyErr_NoMemory();
            return -1;
        }
        r->ev_cap = cap2;
    }
    if (grow(&r->arena, &r->arena_cap, r->arena_len + n + 1) < 0) return -1;
    char *o = r->arena + r->arena_len;
    Py_ssize_t k = decode ? unescape_into(p, n, o) : -1;
    if (k < 0) {
        memcpy(o, p, (size_t)n);
        k = n;
    }
    Py_ssize_t i = r->n_ev++;
    r->ev_ms[i] = r->now * 1000.0;
    r->ev_off[i] = r->arena_len;
    r->ev_len[i] = k;
    r->arena_len += k;
    r->ev_tok[i] = r->counts ? table_get(r->counts, o, k) : -1;
    if (r->ev_tok[i] < 0) r->misses++;
    return 0;
}

/* StreamTimes.feed over buf (pending + this read's body), at r->now. */
static int scan(Reader *r)
{
    char *b = r->buf;
    double now = r->now;
    if (!r->first_byte) r->first_byte = now;
    Py_ssize_t end = rfind_blank(b, r->len);
    if (end < 0) return 0;
    int escaped = memchr(b, '\\', (size_t)end) != NULL;
    Py_ssize_t pieces = 0, pos = 0, tail = 0;
    for (;;) {
        Py_ssize_t i = find(b, pos, end, KEY("\"content\""));
        Py_ssize_t s, e;
        if (i < 0) break;
        if (!match_piece(b, i, end, &s, &e)) {
            pos = i + 1;
            continue;
        }
        if (add_event(r, b + s, e - s, escaped && memchr(b + s, '\\', (size_t)(e - s))) < 0) return -1;
        pieces++;
        pos = e + 1;
    }
    if (pieces) {
        if (!r->first_content) {
            r->first_content = now;
            if (!r->first_output) r->first_output = now;
        }
        r->last_content = now;
        Py_ssize_t j = rfind(b, 0, end, KEY("\"content\""));
        Py_ssize_t last = j >= 0 ? rfind_blank(b, j) : -1;
        tail = last >= 0 ? last + 2 : 0;
    }
    if (!r->first_output) {
        Py_ssize_t i = find(b, 0, end, KEY("\"reasoning"));
        if (i >= 0 && each(r, end, KEY("\"reasoning"), i, 0) < 0) return -1;
        i = find(b, 0, end, KEY("\"tool_calls\""));
        if (i >= 0 && each(r, end, KEY("\"tool_calls\""), i, 0) < 0) return -1;
    }
    static const char *closing[] = {"\"usage\"", "\"explanation\"", "\"error\""};
    for (int k = 0; k < 3; k++) {
        Py_ssize_t kl = (Py_ssize_t)strlen(closing[k]);
        Py_ssize_t i = find(b, tail, end, closing[k], kl);
        if (i >= 0 && each(r, end, closing[k], kl, i, 1) < 0) return -1;
    }
    r->len -= end + 2;
    memmove(b, b + end + 2, (size_t)r->len);
    return 0;
}

/* --- HTTP framing ----------------------------------------------------------------------------- */

static int value_error(const char *msg)
{
    PyErr_SetString(PyExc_ValueError, msg);
    return -1;
}

static int ieq(const char *a, Py_ssize_t n, const char *lower)
{
    if ((Py_ssize_t)strlen(lower) != n) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c != lower[i]) return 0;
    }
    return 1;
}

/* Whether the comma-separated value holds token (case-insensitive); last: only as its last item. */
static int has_token(const char *v, Py_ssize_t n, const char *token, int last)
{
    Py_ssize_t i = 0;
    int found = 0;
    while (i <= n) {
        Py_ssize_t j = i;
        while (j < n && v[j] != ',') j++;
        Py_ssize_t a = i, z = j;
        while (a < z && (v[a] == ' ' || v[a] == '\t')) a++;
        while (z > a && (v[z - 1] == ' ' || v[z - 1] == '\t')) z--;
        found = ieq(v + a, z - a, token);
        if (found && !last) return 1;
        i = j + 1;
    }
    return last ? found : 0;
}

/* The status line and headers in head[0:n] (n ends at the blank line's first CRLF). */
static int parse_head(Reader *r, const char *h, Py_ssize_t n)
{
    if (n < 12 || memcmp(h, "HTTP/1.", 7) != 0 || (h[7] != '0' && h[7] != '1') || h[8] != ' ')
        return value_error("invalid status line");
    for (int k = 9; k < 12; k++) {
        if (h[k] < '0' || h[k] > '9') return value_error("invalid status code");
    }
    if (n > 12 && h[12] != ' ' && h[12] != '\r') return value_error("invalid status line");
    r->version_minor = h[7] - '0';
    r->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    int chunked = 0, close = 0, keep = 0;
    long long length = -1;
    const char *line = memchr(h, '\n', (size_t)n);
    while (line && line + 1 < h + n) {
        const char *s = line + 1;
        const char *eol = memchr(s, '\n', (size_t)(h + n - s));
        Py_ssize_t ln = (eol ? eol : h + n) - s;
        if (ln && s[ln - 1] == '\r') ln--;
        line = eol;
        if (!ln) continue;
        const char *colon = memchr(s, ':', (size_t)ln);
        if (!colon || colon == s) return value_error("invalid header line");
        Py_ssize_t kn = colon - s;
        const char *v = colon + 1;
        Py_ssize_t vn = s + ln - v;
        while (vn && (*v == ' ' || *v == '\t')) v++, vn--;
        while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t')) vn--;
        if (ieq(s, kn, "transfer-encoding")) {
            chunked = has_token(v, vn, "chunked", 1);
        } else if (ieq(s, kn, "content-length")) {
            long long x = 0;
            if (!vn) return value_error("invalid content-length");
            for (Py_ssize_t k = 0; k < vn; k++) {
                if (v[k] < '0' || v[k] > '9' || x > (1LL << 50)) return value_error("invalid content-length");
                x = x * 10 + (v[k] - '0');
            }
            if (length >= 0 && length != x) return value_error("conflicting content-length");
            length = x;
        } else if (ieq(s, kn, "connection")) {
            close |= has_token(v, vn, "close", 0);
            keep |= has_token(v, vn, "keep-alive", 0);
        }
    }
    r->keep_alive = r->version_minor ? !close : keep && !close;
    if (r->status < 200 || r->status == 204 || r->status == 304) {
        r->phase = P_DONE;
    } else if (chunked) {
        r->phase = P_SIZE;
        r->remaining = 0;
        r->size_digits = 0;
    } else if (length >= 0) {
        r->phase = length ? P_LENGTH : P_DONE;
        r->remaining = length;
    } else {
        r->phase = P_EOF;
        r->keep_alive = 0;
    }
    return 0;
}

/* Head bytes from d[0:n]; returns how many it took (the rest is body), or -1. */
static Py_ssize_t take_head(Reader *r, const char *d, Py_ssize_t n)
{
    if (!r->head_len) { /* the usual case: the whole head in this read, no copy */
        Py_ssize_t i = find(d, 0, n, KEY("\r\n\r\n"));
        if (i >= 0) return parse_head(r, d, i + 2) < 0 ? -1 : i + 4;
    }
    Py_ssize_t from = r->head_len > 3 ? r->head_len - 3 : 0;
    if (grow(&r->head, &r->head_cap, r->head_len + n) < 0) return -1;
    memcpy(r->head + r->head_len, d, (size_t)n);
    Py_ssize_t total = r->head_len + n;
    Py_ssize_t i = find(r->head, from, total, KEY("\r\n\r\n"));
    if (i < 0) {
        if (total > HEAD_MAX) return value_error("headers too large");
        r->head_len = total;
        return n;
    }
    Py_ssize_t used = i + 4 - r->head_len;
    r->head_len = 0;
    if (parse_head(r, r->head, i + 2) < 0) return -1;
    return used;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The body bytes of d[0:n] (after the head) into buf, up to the answer's end; returns how many
 * body bytes (framing aside) the read held, or -1. */
static Py_ssize_t take_body(Reader *r, const char *d, Py_ssize_t n)
{
    Py_ssize_t i = 0, fed = 0;
    while (i < n && r->phase != P_DONE) {
        if (r->phase == P_SIZE && !r->size_digits) {
            /* The usual chunk, "HEX\r\n" data "\r\n", whole in this read: taken in one step. Any
             * other shape (an extension, a bare LF, a chunk split across reads, an error) is left
             * to the byte-at-a-time states below, from this same byte. */
            Py_ssize_t j = i;
            long long size = 0;
            int v;
            while (j < n && j - i < 15 && (v = hexval(d[j])) >= 0) size = size * 16 + v, j++;
            if (j == i || j + 2 > n || d[j] != '\r' || d[j + 1] != '\n') goto slow;
            j += 2;
            if (!size) {
                r->phase = P_TRL_START;
                i = j;
                continue;
            }
            if (j + size + 2 > n || d[j + size] != '\r' || d[j + size + 1] != '\n') goto slow;
            if (append_body(r, d + j, (Py_ssize_t)size) < 0) return -1;
            fed += size;
            i = j + size + 2;
            continue;
        }
    slow:;
        char c = d[i];
        switch (r->phase) {
        case P_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                if (r->size_digits++ >= 15) return value_error("invalid chunk size");
                r->remaining = r->remaining * 16 + v;
            } else if (c == ';' || c == ' ' || c == '\t') {
                r->phase = P_EXT;
            } else if (c == '\r') {
                r->phase = P_SIZE_LF;
            } else if (c == '\n') {
                goto size_done;
            } else {
                return value_error("invalid chunk size");
            }
            i++;
            break;
        }
        case P_EXT:
            if (c == '\r') r->phase = P_SIZE_LF;
            else if (c == '\n') goto size_done;
            i++;
            break;
        case P_SIZE_LF:
            if (c != '\n') return value_error("invalid chunk size line");
        size_done:
            i++;
            if (!r->size_digits) return value_error("invalid chunk size");
            r->phase = r->remaining ? P_DATA : P_TRL_START;
            break;
        case P_DATA:
        case P_LENGTH: {
            Py_ssize_t k = n - i < r->remaining ? n - i : (Py_ssize_t)r->remaining;
            if (append_body(r, d + i, k) < 0) return -1;
            i += k;
            fed += k;
            r->remaining -= k;
            if (!r->remaining) r->phase = r->phase == P_DATA ? P_DATA_CR : P_DONE;
            break;
        }
        case P_DATA_CR:
            if (c == '\r') r->phase = P_DATA_LF;
            else if (c == '\n') r->phase = P_SIZE, r->size_digits = 0;
            else return value_error("missing CRLF after chunk data");
            i++;
            break;
        case P_DATA_LF:
            if (c != '\n') return value_error("missing CRLF after chunk data");
            r->phase = P_SIZE;
            r->size_digits = 0;
            i++;
            break;
        case P_TRL_START:
            r->phase = c == '\r' ? P_TRL_LF : c == '\n' ? P_DONE : P_TRL;
            i++;
            break;
        case P_TRL:
            if (c == '\n') r->phase = P_TRL_START;
            i++;
            break;
        case P_TRL_LF:
            if (c != '\n') return value_error("invalid chunked trailer");
            r->phase = P_DONE;
            i++;
            break;
        case P_EOF:
            if (append_body(r, d + i, n - i) < 0) return -1;
            fed += n - i;
            i = n;
            break;
        default:
            return value_error("reader in an unknown state");
        }
    }
    return fed;
}

/* The answer is whole: a last event without its blank line still counts (status < 400). */
static int finish(Reader *r)
{
    r->phase = P_DONE;
    if (r->status < 400 && r->len) {
        if (append_body(r, "\n\n", 2) < 0) return -1;
        return scan(r);
    }
    return 0;
}

/* --- the Python type -------------------------------------------------------------------------- */

static int reset_state(Reader *r)
{
    r->n_ev = r->misses = r->arena_len = 0;
    Py_CLEAR(r->usage);
    Py_CLEAR(r->explanation);
    Py_CLEAR(r->error);
    r->first_byte = r->first_output = r->first_content = r->last_content = 0.0;
    r->status = 0;
    r->keep_alive = 0;
    r->phase = P_HEAD;
    r->after_cr = 0;
    r->remaining = 0;
    r->size_digits = 0;
    r->head_len = 0;
    r->len = 0;
    return 0;
}

static int Reader_init(Reader *r, PyObject *args, PyObject *kw)
{
    static char *names[] = {"counts", NULL};
    PyObject *counts = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:SSEReader", names, &counts)) return -1;
    if (counts != Py_None && !PyObject_TypeCheck(counts, &PieceCountsType)) {
        PyErr_SetString(PyExc_TypeError, "counts must be a PieceCounts or None");
        return -1;
    }
    Py_XSETREF(r->counts, counts == Py_None ? NULL : (PieceCounts *)Py_NewRef(counts));
    r->now = 0.0;
    return reset_state(r);
}

static void Reader_dealloc(Reader *r)
{
    Py_CLEAR(r->counts);
    PyMem_Free(r->ev_ms);
    PyMem_Free(r->ev_tok);
    PyMem_Free(r->ev_off);
    PyMem_Free(r->ev_len);
    PyMem_Free(r->arena);
    Py_CLEAR(r->usage);
    Py_CLEAR(r->explanation);
    Py_CLEAR(r->error);
    PyMem_Free(r->head);
    PyMem_Free(r->buf);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *Reader_reset(Reader *r, PyObject *Py_UNUSED(ignored))
{
    if (reset_state(r) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Reader_read(Reader *r, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read(data, now) takes 2 arguments");
        return NULL;
    }
    Py_buffer view;
    double now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    if (r->phase == P_DONE) Py_RETURN_FALSE; /* bytes after a whole answer: not ours */
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *d = view.buf;
    Py_ssize_t n = view.len, used = 0;
    r->now = now;
    int rc = 0;
    if (r->phase == P_HEAD) {
        used = take_head(r, d, n);
        if (used < 0) rc = -1;
    }
    Py_ssize_t fed = 0;
    if (!rc && r->phase != P_HEAD && r->phase != P_DONE && used < n) {
        fed = take_body(r, d + used, n - used);
        if (fed < 0) rc = -1;
    }
    PyBuffer_Release(&view);
    if (rc < 0) return NULL;
    if (fed && scan(r) < 0) return NULL;
    if (r->phase == P_DONE) {
        if (finish(r) < 0) return NULL;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyObject *Reader_eof(Reader *r, PyObject *Py_UNUSED(ignored))
{
    if (r->phase != P_EOF) Py_RETURN_FALSE;
    r->keep_alive = 0;
    if (finish(r) < 0) return NULL;
    Py_RETURN_TRUE;
}

static PyObject *Reader_get_content_times(Reader *r, void *Py_UNUSED(c))
{
    PyObject *list = PyList_New(r->n_ev), *ms = NULL;
    if (!list) return NULL;
    for (Py_ssize_t i = 0; i < r->n_ev; i++) {
        if (!ms || PyFloat_AS_DOUBLE(ms) != r->ev_ms[i]) { /* a read's events share one float */
            ms = PyFloat_FromDouble(r->ev_ms[i]);
            if (!ms) {
                Py_DECREF(list);
                return NULL;
            }
        } else {
            Py_INCREF(ms);
        }
        PyList_SET_ITEM(list, i, ms);
    }
    return list;
}

static PyObject *Reader_get_content_raw(Reader *r, void *Py_UNUSED(c))
{
    PyObject *list = PyList_New(r->n_ev);
    if (!list) return NULL;
    for (Py_ssize_t i = 0; i < r->n_ev; i++) {
        PyObject *piece = PyBytes_FromStringAndSize(r->arena + r->ev_off[i], r->ev_len[i]);
        if (!piece) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, piece);
    }
    return list;
}

/* usage_tokens in stream.py: re.search(rb'"KEY"\s*:\s*(\d+)') over the usage event, as an int or None. */
static PyObject *usage_int(PyObject *usage, const char *key, Py_ssize_t k)
{
    if (!usage) Py_RETURN_NONE;
    const char *ev = PyBytes_AS_STRING(usage);
    Py_ssize_t n = PyBytes_GET_SIZE(usage);
    for (Py_ssize_t i = find(ev, 0, n, key, k); i >= 0; i = find(ev, i + 1, n, key, k)) {
        Py_ssize_t j = skip_space(ev, i + k, n);
        if (j >= n || ev[j] != ':') continue;
        j = skip_space(ev, j + 1, n);
        Py_ssize_t d = j;
        while (d < n && ev[d] >= '0' && ev[d] <= '9') d++;
        if (d == j) continue;
        PyObject *digits = PyUnicode_FromStringAndSize(ev + j, d - j);
        if (!digits) return NULL;
        PyObject *v = PyLong_FromUnicodeObject(digits, 10);
        Py_DECREF(digits);
        return v;
    }
    Py_RETURN_NONE;
}

/* The ITL loop of settle_one in stream.py, step for step: each gap not zero goes into gaps
 * (divided by its event's tokens, once per token); returns the zero gaps' count, sets *local (the
 * stream's tokens), *itl_max and *any (whether a gap was seen). -1 on an error. */
static long long gap_loop(Reader *r, PyObject *gaps, long long *local, double *itl_max, int *any)
{
    long long zeros = 0, sum = 0;
    for (Py_ssize_t i = 0; i < r->n_ev; i++) sum += r->ev_tok[i];
    *local = sum;
    *itl_max = 0.0;
    *any = 0;
    double prev = r->n_ev ? r->ev_ms[0] : 0.0;
    for (Py_ssize_t i = 1; i < r->n_ev; i++) {
        long k = r->ev_tok[i];
        if (k <= 0) continue; /* a whitespace-only piece: its gap joins the next token's */
        double gap = (r->ev_ms[i] - prev) / (double)k;
        if (gap == 0.0) {
            zeros += k; /* one read's events: recorded as a count */
        } else {
            PyObject *g = PyFloat_FromDouble(gap);
            if (!g) return -1;
            for (long j = 0; j < k; j++) {
                if (PyList_Append(gaps, g) < 0) {
                    Py_DECREF(g);
                    return -1;
                }
            }
            Py_DECREF(g);
        }
        if (!*any || gap > *itl_max) *itl_max = gap;
        *any = 1;
        prev = r->ev_ms[i];
    }
    return zeros;
}

/* The stream's token figures when the shared table knew every piece (else None: StreamBook's
 * token pass counts them): settle_one in stream.py, step for step. */
static PyObject *Reader_token_figures(Reader *r, PyObject *Py_UNUSED(ignored))
{
    if (!r->counts || r->misses) Py_RETURN_NONE;
    long long local;
    double itl_max;
    int any;
    PyObject *gaps = PyList_New(0);
    if (!gaps) return NULL;
    long long zeros = gap_loop(r, gaps, &local, &itl_max, &any);
    if (zeros < 0) goto fail;
    double first = r->n_ev ? r->ev_ms[0] : 0.0, last = r->n_ev ? r->ev_ms[r->n_ev - 1] : 0.0;
    PyObject *mx = any ? PyFloat_FromDouble(itl_max) : Py_NewRef(Py_None);
    if (!mx) goto fail;
    PyObject *prompt = usage_int(r->usage, KEY("\"prompt_tokens\""));
    PyObject *completion = prompt ? usage_int(r->usage, KEY("\"completion_tokens\"")) : NULL;
    if (!completion) {
        Py_XDECREF(prompt);
        Py_DECREF(mx);
        goto fail;
    }
    return Py_BuildValue("(LLNNddNN)", local, zeros, gaps, mx, first, last, prompt, completion);
fail:
    Py_DECREF(gaps);
    return NULL;
}

/* Interned record keys for fill (made once, at import). */
static PyObject *k_prompt_srv, *k_completion_srv, *k_completion_local, *k_output, *k_source, *k_itl_max,
    *k_tpot, *k_tokens_per_s, *k_prompt_local, *v_local;

static int put(PyObject *line, PyObject *key, PyObject *v)
{
    if (!v) return -1;
    int rc = PyDict_SetItem(line, key, v);
    Py_DECREF(v);
    return rc;
}

/* Interned record keys for stamp and fill (made once, at import). */
static PyObject *k_stream, *k_ttfb, *k_ttft, *k_ttfo, *k_ittft, *k_ittfo, *k_chunks;

/* An ms figure from a wire time (0: never seen, None), appended to its histogram's list too. */
static int put_ms(PyObject *line, PyObject *key, double at, double from, PyObject *mark)
{
    if (!at) return PyDict_SetItem(line, key, Py_None);
    PyObject *v = PyFloat_FromDouble((at - from) * 1000.0);
    if (!v) return -1;
    int rc = PyDict_SetItem(line, key, v);
    if (!rc && mark != Py_None) rc = PyList_Append(mark, v);
    Py_DECREF(v);
    return rc;
}

/* stamp(line, sent, intended, done, marks) -> end: stream.stamp (the wire times into the record),
 * each figure also appended to its list in marks (TTFB, TTFT, TTFO and the intended TTFT and TTFO
 * histograms' pending lists, or None each), as StreamTimes.stamp does. */
static PyObject *Reader_stamp(Reader *r, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyDict_Check(args[0]) || !PyTuple_Check(args[4]) || PyTuple_GET_SIZE(args[4]) != 5) {
        PyErr_SetString(PyExc_TypeError, "stamp(line: dict, sent, intended, done, marks: 5-tuple)");
        return NULL;
    }
    PyObject *line = args[0], *const *m = &PyTuple_GET_ITEM(args[4], 0);
    for (int k = 0; k < 5; k++) {
        if (m[k] != Py_None && !PyList_Check(m[k])) {
            PyErr_SetString(PyExc_TypeError, "marks: lists or None");
            return NULL;
        }
    }
    double sent = PyFloat_AsDouble(args[1]), intended = PyFloat_AsDouble(args[2]), done = PyFloat_AsDouble(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (PyDict_SetItem(line, k_stream, Py_True) < 0 || put_ms(line, k_ttfb, r->first_byte, sent, m[0]) < 0 ||
        put_ms(line, k_ttft, r->first_content, sent, m[1]) < 0 ||
        put_ms(line, k_ttfo, r->first_output, sent, m[2]) < 0 ||
        put_ms(line, k_ittft, r->first_content, intended, m[3]) < 0 ||
        put_ms(line, k_ittfo, r->first_output, intended, m[4]) < 0 ||
        put(line, k_chunks, PyLong_FromSsize_t(r->n_ev)) < 0)
        return NULL;
    return PyFloat_FromDouble(r->last_content ? r->last_content : done);
}

/* fill(line, itl, tpot, latency_ms, prompt_local) -> bool: StreamBook._known in C. When the shared
 * table knew every piece: the token fields into the record dict, the ITL gaps that are not zero
 * onto the list itl, TPOT onto the list tpot, and the counters summed in the table (take_sums);
 * else False and nothing is touched. */
static PyObject *Reader_fill(Reader *r, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyDict_Check(args[0]) || !PyList_Check(args[1]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "fill(line: dict, itl: list, tpot: list, latency_ms, prompt_local)");
        return NULL;
    }
    if (!r->counts || r->misses) Py_RETURN_FALSE;
    PyObject *line = args[0];
    double latency_ms = args[3] == Py_None ? 0.0 : PyFloat_AsDouble(args[3]);
    if (latency_ms == -1.0 && PyErr_Occurred()) return NULL;
    long long local;
    double itl_max;
    int any;
    long long zeros = gap_loop(r, args[1], &local, &itl_max, &any);
    if (zeros < 0) return NULL;
    PyObject *prompt = usage_int(r->usage, KEY("\"prompt_tokens\""));
    if (!prompt) return NULL;
    if (put(line, k_prompt_srv, prompt) < 0) return NULL;
    PyObject *completion = usage_int(r->usage, KEY("\"completion_tokens\""));
    if (!completion) return NULL;
    int compared = completion != Py_None;
    long long completion_v = compared ? PyLong_AsLongLong(completion) : 0;
    if (put(line, k_completion_srv, completion) < 0) return NULL;
    if (completion_v == -1 && PyErr_Occurred()) return NULL;
    PyObject *lv = PyLong_FromLongLong(local);
    if (!lv) return NULL;
    if (PyDict_SetItem(line, k_completion_local, lv) < 0 || put(line, k_output, lv) < 0) return NULL;
    if (PyDict_SetItem(line, k_source, v_local) < 0) return NULL;
    if (put(line, k_itl_max, any ? PyFloat_FromDouble(itl_max) : Py_NewRef(Py_None)) < 0) return NULL;
    PyObject *tpot = Py_None;
    if (local > 1 && r->n_ev > 1) {
        tpot = PyFloat_FromDouble((r->ev_ms[r->n_ev - 1] - r->ev_ms[0]) / (double)(local - 1));
        if (!tpot || PyList_Append(args[2], tpot) < 0) {
            Py_XDECREF(tpot);
            return NULL;
        }
    } else {
        Py_INCREF(tpot);
    }
    if (put(line, k_tpot, tpot) < 0) return NULL;
    PyObject *per_s = Py_NewRef(Py_None);
    double latency_s = latency_ms / 1000.0;
    if (local && latency_s > 0) { /* round(local / latency_s, 3), by the same correctly rounded steps */
        Py_DECREF(per_s);
        char *text = PyOS_double_to_string((double)local / latency_s, 'f', 3, 0, NULL);
        if (!text) return NULL;
        double rounded = PyOS_string_to_double(text, NULL, NULL);
        PyMem_Free(text);
        if (rounded == -1.0 && PyErr_Occurred()) return NULL;
        per_s = PyFloat_FromDouble(rounded);
    }
    if (put(line, k_tokens_per_s, per_s) < 0) return NULL;
    if (PyDict_SetItem(line, k_prompt_local, args[4]) < 0) return NULL;
    PieceCounts *t = r->counts;
    t->zeros += zeros;
    t->compared += compared;
    t->mismatched += compared && local != completion_v;
    t->output += local;
    Py_RETURN_TRUE;
}

static PyObject *Reader_get_content_chunks(Reader *r, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(r->n_ev); }

static PyObject *Reader_get_pending(Reader *r, void *Py_UNUSED(c))
{
    return PyBytes_FromStringAndSize(r->buf ? r->buf : "", r->len);
}

static PyObject *Reader_get_body(Reader *r, void *Py_UNUSED(c))
{
    if (r->status >= 400) return Reader_get_pending(r, NULL);
    if (r->explanation) return Py_NewRef(r->explanation);
    return PyBytes_FromStringAndSize("", 0);
}

static PyMethodDef Reader_methods[] = {
    {"read", (PyCFunction)(void (*)(void))Reader_read, METH_FASTCALL,
     "read(data, now) -> bool: one socket read at monotonic time now; True once the answer is whole."},
    {"eof", (PyCFunction)Reader_eof, METH_NOARGS,
     "eof() -> bool: the connection closed; True if that ends the answer (a body delimited by close)."},
    {"reset", (PyCFunction)Reader_reset, METH_NOARGS, "reset(): before the next request."},
    {"stamp", (PyCFunction)(void (*)(void))Reader_stamp, METH_FASTCALL,
     "stamp(line, sent, intended, done, marks) -> end: the wire times into the record and their histograms."},
    {"fill", (PyCFunction)(void (*)(void))Reader_fill, METH_FASTCALL,
     "fill(line, itl, tpot, latency_ms, prompt_local) -> bool: the token fields, when the table knew every piece."},
    {"token_figures", (PyCFunction)Reader_token_figures, METH_NOARGS,
     "token_figures() -> (local, zeros, gaps, itl_max, first_ms, last_ms, prompt, completion) | None."},
    {NULL},
};

static PyMemberDef Reader_members[] = {
    {"now", T_DOUBLE, offsetof(Reader, now), 0, NULL},
    {"first_byte", T_DOUBLE, offsetof(Reader, first_byte), 0, NULL},
    {"first_output", T_DOUBLE, offsetof(Reader, first_output), 0, NULL},
    {"first_content", T_DOUBLE, offsetof(Reader, first_content), 0, NULL},
    {"last_content", T_DOUBLE, offsetof(Reader, last_content), 0, NULL},
    {"usage", T_OBJECT, offsetof(Reader, usage), READONLY, NULL},
    {"explanation", T_OBJECT, offsetof(Reader, explanation), READONLY, NULL},
    {"error", T_OBJECT, offsetof(Reader, error), READONLY, NULL},
    {"status", T_INT, offsetof(Reader, status), READONLY, NULL},
    {"keep_alive", T_BOOL, offsetof(Reader, keep_alive), READONLY, NULL},
    {NULL},
};

static PyGetSetDef Reader_getset[] = {
    {"content_times", (getter)Reader_get_content_times, NULL, "ms of each content event (a new list)", NULL},
    {"content_raw", (getter)Reader_get_content_raw, NULL, "the text of each content event (a new list)", NULL},
    {"content_chunks", (getter)Reader_get_content_chunks, NULL, "how many content events", NULL},
    {"pending", (getter)Reader_get_pending, NULL, "body bytes not yet a complete event", NULL},
    {"body", (getter)Reader_get_body, NULL, "the answer's body for the record: the error body or explanation", NULL},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hif.harness.load._sse.SSEReader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A streamed chat's HTTP answer read in C: status, framing, SSE timings (see stream.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_members = Reader_members,
    .tp_getset = Reader_getset,
};

static void Counts_dealloc(PieceCounts *t)
{
    PyMem_Free(t->slots);
    PyMem_Free(t->arena);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *Counts_update(PieceCounts *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
        PyList_GET_SIZE(args[0]) != PyList_GET_SIZE(args[1])) {
        PyErr_SetString(PyExc_TypeError, "update(pieces, counts): two lists of one length");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(args[0]); i++) {
        PyObject *piece = PyList_GET_ITEM(args[0], i);
        long count = PyLong_AsLong(PyList_GET_ITEM(args[1], i));
        if (count == -1 && PyErr_Occurred()) return NULL;
        if (!PyBytes_Check(piece) || count < 0) {
            PyErr_SetString(PyExc_ValueError, "pieces are bytes, counts are >= 0");
            return NULL;
        }
        if (table_put(t, PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece), count) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Counts_get(PieceCounts *t, PyObject *piece)
{
    if (!PyBytes_Check(piece)) {
        PyErr_SetString(PyExc_TypeError, "get(piece): bytes");
        return NULL;
    }
    long c = table_get(t, PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece));
    if (c < 0) Py_RETURN_NONE;
    return PyLong_FromLong(c);
}

static PyObject *Counts_clear(PieceCounts *t, PyObject *Py_UNUSED(ignored))
{
    PyMem_Free(t->slots);
    t->slots = NULL;
    t->cap = t->used = t->arena_len = 0;
    Py_RETURN_NONE;
}

static PyObject *Counts_take_sums(PieceCounts *t, PyObject *Py_UNUSED(ignored))
{
    PyObject *v = Py_BuildValue("(LLLL)", t->zeros, t->compared, t->mismatched, t->output);
    if (v) t->zeros = t->compared = t->mismatched = t->output = 0;
    return v;
}

static Py_ssize_t Counts_len(PieceCounts *t) { return t->used; }

static PyMethodDef Counts_methods[] = {
    {"update", (PyCFunction)(void (*)(void))Counts_update, METH_FASTCALL, "update(pieces, counts): learn counts."},
    {"get", (PyCFunction)Counts_get, METH_O, "get(piece) -> int | None"},
    {"clear", (PyCFunction)Counts_clear, METH_NOARGS, "clear(): forget every piece."},
    {"take_sums", (PyCFunction)Counts_take_sums, METH_NOARGS,
     "take_sums() -> (zero gaps, compared, mismatched, output tokens) summed by fill since the last call."},
    {NULL},
};

static PySequenceMethods Counts_seq = {.sq_length = (lenfunc)Counts_len};

static PyTypeObject PieceCountsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hif.harness.load._sse.PieceCounts",
    .tp_basicsize = sizeof(PieceCounts),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Token counts of content pieces, shared by a run's SSEReaders (StreamBook fills it).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Counts_dealloc,
    .tp_methods = Counts_methods,
    .tp_as_sequence = &Counts_seq,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_sse",
    .m_doc = "The load runner's SSE reader in C (optional; stream.py is the fallback).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__sse(void)
{
    if (PyType_Ready(&ReaderType) < 0 || PyType_Ready(&PieceCountsType) < 0) return NULL;
    if (!(k_prompt_srv = PyUnicode_InternFromString("prompt_tokens_server")) ||
        !(k_completion_srv = PyUnicode_InternFromString("completion_tokens_server")) ||
        !(k_completion_local = PyUnicode_InternFromString("completion_tokens_local")) ||
        !(k_output = PyUnicode_InternFromString("output_tokens")) ||
        !(k_source = PyUnicode_InternFromString("token_source")) ||
        !(k_itl_max = PyUnicode_InternFromString("itl_max_ms")) || !(k_tpot = PyUnicode_InternFromString("tpot_ms")) ||
        !(k_tokens_per_s = PyUnicode_InternFromString("output_tokens_per_s")) ||
        !(k_prompt_local = PyUnicode_InternFromString("prompt_tokens_local")) ||
        !(v_local = PyUnicode_InternFromString("local")) || !(k_stream = PyUnicode_InternFromString("stream")) ||
        !(k_ttfb = PyUnicode_InternFromString("ttfb_ms")) || !(k_ttft = PyUnicode_InternFromString("ttft_ms")) ||
        !(k_ttfo = PyUnicode_InternFromString("ttfo_ms")) ||
        !(k_ittft = PyUnicode_InternFromString("intended_ttft_ms")) ||
        !(k_ittfo = PyUnicode_InternFromString("intended_ttfo_ms")) ||
        !(k_chunks = PyUnicode_InternFromString("content_chunks")))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "SSEReader", (PyObject *)&ReaderType) < 0 ||
        PyModule_AddObjectRef(m, "PieceCounts", (PyObject *)&PieceCountsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
