/* The common case of `TripStream._block` in C: canonical CSV lines -> binary COPY rows.
 *
 * encode(block, kinds, hashed, width[, checks]) -> (data, rows[, counts]) | None
 *
 * `kinds` has one byte per column: 'T' text (ID/FLAG/TEXT), 'C' int4, 'M' float8,
 * 'S' timestamp. `hashed` lists the column positions hashed into unique_row_id (md5 hex,
 * first field). Each value is rendered as PostgreSQL renders the typed column as text
 * (see taxi_cli/postgres/pgtext.py). Anything not trivially canonical (a quote, a blank
 * line, a wrong field count, a non-ASCII or control byte, a line over 1 MiB, a number or
 * timestamp outside the plain forms) returns None: the caller then runs the Python path
 * on the whole block, which reports or quarantines exactly as before. No dependencies;
 * MD5 per RFC 1321, four rows' ids at a time; lines split 16 bytes at a time (SSE2).
 *
 * `checks` (optional) counts the data checks over the rows encoded, on the values as
 * sent (taxi_cli/quality.py): a tuple (pickup, dropoff, fare, total, passengers, pu, do,
 * start, end, known) of column positions (-1: absent), the month's bounds as PostgreSQL
 * timestamps (microseconds since 2000) and `known`, one byte per zone id (non-zero:
 * known). `counts` is (outside month, dropoff before pickup, negative fare or total,
 * null passenger count, unknown zone id), each a number of rows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- MD5 (RFC 1321) ------------------------------------------------------------------ */

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
    0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
    0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
    0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
    0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
    0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
    0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
    0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
    0xeb86d391};
static const int S[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                          5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                          4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                          6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

#define ROTL(x, c) (((x) << (c)) | ((x) >> (32 - (c))))
#define STEP(f, a, b, c, d, m, k, r) (a) = (b) + ROTL((a) + (f) + (k) + (m), r)
#define F1(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define F2(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define F3(b, c, d) ((b) ^ (c) ^ (d))
#define F4(b, c, d) ((c) ^ ((b) | ~(d)))
#define R4(F, i, g0, g1, g2, g3)                                                            \
    STEP(F(b, c, d), a, b, c, d, m[g0], K[i], S[i]);                                       \
    STEP(F(a, b, c), d, a, b, c, m[g1], K[i + 1], S[i + 1]);                               \
    STEP(F(d, a, b), c, d, a, b, m[g2], K[i + 2], S[i + 2]);                               \
    STEP(F(c, d, a), b, c, d, a, m[g3], K[i + 3], S[i + 3])

static void md5_block(uint32_t st[4], const unsigned char *p) {
    uint32_t m[16];
    memcpy(m, p, 64); /* little-endian host (x86-64, aarch64) */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (int i = 0; i < 16; i++) m[i] = __builtin_bswap32(m[i]);
#endif
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    R4(F1, 0, 0, 1, 2, 3);
    R4(F1, 4, 4, 5, 6, 7);
    R4(F1, 8, 8, 9, 10, 11);
    R4(F1, 12, 12, 13, 14, 15);
    R4(F2, 16, 1, 6, 11, 0);
    R4(F2, 20, 5, 10, 15, 4);
    R4(F2, 24, 9, 14, 3, 8);
    R4(F2, 28, 13, 2, 7, 12);
    R4(F3, 32, 5, 8, 11, 14);
    R4(F3, 36, 1, 4, 7, 10);
    R4(F3, 40, 13, 0, 3, 6);
    R4(F3, 44, 9, 12, 15, 2);
    R4(F4, 48, 0, 7, 14, 5);
    R4(F4, 52, 12, 3, 10, 1);
    R4(F4, 56, 8, 15, 6, 13);
    R4(F4, 60, 4, 11, 2, 9);
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
}

/* md5 hex of msg[0:len) into out[32]; msg must have 72 bytes of spare room after len */
static void md5_hex(unsigned char *msg, size_t len, char *out) {
    static const char hex[] = "0123456789abcdef";
    uint32_t st[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    size_t total = ((len + 8) / 64 + 1) * 64;
    msg[len] = 0x80;
    memset(msg + len + 1, 0, total - len - 1);
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) msg[total - 8 + i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) md5_block(st, msg + off);
    for (int i = 0; i < 16; i++) {
        unsigned char byte = (unsigned char)(st[i / 4] >> (8 * (i % 4)));
        out[2 * i] = hex[byte >> 4];
        out[2 * i + 1] = hex[byte & 15];
    }
}

/* Eight messages of <= 55 bytes at once: one MD5 block each, the 64 steps run on
 * vectors of lanes (GCC/Clang vector extensions): 8 lanes in AVX2 registers where the
 * CPU has them (checked once at import), else twice 4 lanes (SSE2/NEON, else plain
 * code). A single MD5 is a chain of dependent steps, so independent lanes are what
 * makes it cheap per row. */
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef uint32_t v8u __attribute__((vector_size(32)));

#define VSTEP(f, a, b, c, d, m, k, r) (a) = (b) + VROTL((a) + (f) + (k) + (m), r)
#define VROTL(x, c) (((x) << (c)) | ((x) >> (32 - (c))))
#define VR4(F, i, g0, g1, g2, g3)                                                           \
    VSTEP(F(b, c, d), a, b, c, d, w[g0], K[i], S[i]);                                      \
    VSTEP(F(a, b, c), d, a, b, c, w[g1], K[i + 1], S[i + 1]);                              \
    VSTEP(F(d, a, b), c, d, a, b, w[g2], K[i + 2], S[i + 2]);                              \
    VSTEP(F(c, d, a), b, c, d, a, w[g3], K[i + 3], S[i + 3])

#define LANES 8 /* the rows hashed together */
#define LANE_BYTES 64

/* NL lanes of padded 64-byte blocks (lens given) -> out[l]: 32 hex chars each */
#define MD5_LANES(name, VT, NL, ATTR)                                                       \
    ATTR static void name(unsigned char *blocks, const size_t *lens, char *const *out) {    \
        static const char hex[] = "0123456789abcdef";                                      \
        VT w[16];                                                                           \
        for (int l = 0; l < NL; l++) {                                                      \
            unsigned char *blk = blocks + l * LANE_BYTES;                                   \
            size_t len = lens[l];                                                           \
            blk[len] = 0x80;                                                                \
            memset(blk + len + 1, 0, 56 - len - 1);                                         \
            uint64_t bits = (uint64_t)len * 8;                                              \
            for (int i = 0; i < 8; i++) blk[56 + i] = (unsigned char)(bits >> (8 * i));    \
            for (int i = 0; i < 16; i++) {                                                  \
                uint32_t v;                                                                 \
                memcpy(&v, blk + 4 * i, 4);                                                 \
                w[i][l] = LE32(v);                                                          \
            }                                                                               \
        }                                                                                   \
        VT a, b, c, d;                                                                      \
        for (int l = 0; l < NL; l++) {                                                      \
            a[l] = 0x67452301, b[l] = 0xefcdab89, c[l] = 0x98badcfe, d[l] = 0x10325476;     \
        }                                                                                   \
        const VT a0 = a, b0 = b, c0 = c, d0 = d;                                            \
        VR4(F1, 0, 0, 1, 2, 3);                                                             \
        VR4(F1, 4, 4, 5, 6, 7);                                                             \
        VR4(F1, 8, 8, 9, 10, 11);                                                           \
        VR4(F1, 12, 12, 13, 14, 15);                                                        \
        VR4(F2, 16, 1, 6, 11, 0);                                                           \
        VR4(F2, 20, 5, 10, 15, 4);                                                          \
        VR4(F2, 24, 9, 14, 3, 8);                                                           \
        VR4(F2, 28, 13, 2, 7, 12);                                                          \
        VR4(F3, 32, 5, 8, 11, 14);                                                          \
        VR4(F3, 36, 1, 4, 7, 10);                                                           \
        VR4(F3, 40, 13, 0, 3, 6);                                                           \
        VR4(F3, 44, 9, 12, 15, 2);                                                          \
        VR4(F4, 48, 0, 7, 14, 5);                                                           \
        VR4(F4, 52, 12, 3, 10, 1);                                                          \
        VR4(F4, 56, 8, 15, 6, 13);                                                          \
        VR4(F4, 60, 4, 11, 2, 9);                                                           \
        a += a0;                                                                            \
        b += b0;                                                                            \
        c += c0;                                                                            \
        d += d0;                                                                            \
        for (int l = 0; l < NL; l++) {                                                      \
            uint32_t st[4] = {a[l], b[l], c[l], d[l]};                                      \
            for (int i = 0; i < 16; i++) {                                                  \
                unsigned char byte = (unsigned char)(st[i / 4] >> (8 * (i % 4)));           \
                out[l][2 * i] = hex[byte >> 4];                                             \
                out[l][2 * i + 1] = hex[byte & 15];                                         \
            }                                                                               \
        }                                                                                   \
    }

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LE32(v) __builtin_bswap32(v)
#else
#define LE32(v) (v)
#endif

MD5_LANES(md5_hex_lanes4, v4u, 4, )
#if defined(__x86_64__) && defined(__GNUC__)
MD5_LANES(md5_hex_lanes8_avx2, v8u, 8, __attribute__((target("avx2"))))
static int have_avx2;
#endif

static void md5_hex_lanes(unsigned char *blocks, const size_t *lens, char *const *out) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx2) {
        md5_hex_lanes8_avx2(blocks, lens, out);
        return;
    }
#endif
    md5_hex_lanes4(blocks, lens, out);
    md5_hex_lanes4(blocks + 4 * LANE_BYTES, lens + 4, out + 4);
}

/* ---- values -------------------------------------------------------------------------- */

/* memcpy for the short fields of a row (1-byte flags, zone ids, timestamps): a libc call
 * per field was ~15% of a row's cost. Copies 16 or 32 bytes at once when `src` has them
 * before `end`; `dst` must have 32 bytes of room (the writes after it overwrite the rest). */
static inline void copy_short(unsigned char *dst, const unsigned char *src, size_t n,
                              const unsigned char *end) {
    if (n <= 16 && (size_t)(end - src) >= 16) {
        memcpy(dst, src, 16);
    } else if (n <= 32 && (size_t)(end - src) >= 32) {
        memcpy(dst, src, 16);
        memcpy(dst + 16, src + 16, 16);
    } else {
        memcpy(dst, src, n);
    }
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put64(unsigned char *p, uint64_t v) {
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* `-?[0-9]+` within int4; the canonical text into txt (if not NULL). */
static int parse_int(const unsigned char *s, size_t n, int32_t *out, char *txt, size_t *tlen) {
    size_t i = 0;
    int neg = 0;
    if (n && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n) return 0;
    int64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
        if (v > 2147483648LL) return 0;
    }
    if (neg) v = -v;
    if (v > 2147483647LL || v < -2147483648LL) return 0;
    *out = (int32_t)v;
    if (txt) *tlen = (size_t)snprintf(txt, 16, "%d", (int)v);
    return 1;
}

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* `-?[0-9]*\.?[0-9]*`, >= 1 digit, <= 15 significant digits, 0 or 1e-4 <= |x| < 1e15.
 * txt gets the normalised decimal (PostgreSQL's shortest round-trip text). */
static int parse_num(const unsigned char *s, size_t n, double *out, char *txt, size_t *tlen) {
    char buf[64];
    size_t i = 0;
    int neg = 0;
    if (n == 0 || n >= sizeof buf) return 0;
    if (s[0] == '-') {
        neg = 1;
        i = 1;
    }
    size_t int_lo = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    size_t int_hi = i;
    size_t frac_lo = i, frac_hi = i;
    if (i < n && s[i] == '.') {
        i++;
        frac_lo = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        frac_hi = i;
    }
    if (i != n || (int_hi == int_lo && frac_hi == frac_lo)) return 0;
    /* normalised parts */
    while (int_lo < int_hi && s[int_lo] == '0') int_lo++;
    while (frac_hi > frac_lo && s[frac_hi - 1] == '0') frac_hi--;
    /* significant digits: the digit string without leading and trailing zeros */
    size_t sig, lead = 0; /* lead: zeros after the point before the first digit (< 1) */
    if (int_hi > int_lo) {
        size_t last = frac_hi > frac_lo ? frac_hi : int_hi;
        if (frac_hi > frac_lo)
            sig = (int_hi - int_lo) + (frac_hi - frac_lo);
        else {
            while (last > int_lo && s[last - 1] == '0') last--;
            sig = last - int_lo;
        }
    } else {
        size_t f = frac_lo;
        while (f < frac_hi && s[f] == '0') f++;
        sig = frac_hi - f;
        lead = f - frac_lo;
    }
    if (sig > 15 || int_hi - int_lo > 15) return 0; /* > 15 integer digits: >= 1e15 */
    if (sig && lead >= 4) return 0;                 /* 0 < |x| < 1e-4 */
    double v;
    size_t k = frac_hi - frac_lo;
    if (k <= 22) {
        /* Clinger's fast path: the digits (< 10^15 < 2^53) and 10^k (k <= 22) are exact
         * doubles, so one IEEE division is the correctly rounded value, as strtod's */
        uint64_t mant = 0;
        for (size_t j = int_lo; j < int_hi; j++) mant = mant * 10 + (uint64_t)(s[j] - '0');
        for (size_t j = frac_lo; j < frac_hi; j++) mant = mant * 10 + (uint64_t)(s[j] - '0');
        /* the digit counts above bound |x| to 0 or [1e-4, 1e15): nothing waits on this
         * division's result to decide (it is the slowest step of a row) */
        v = (double)mant / POW10[k];
        if (neg) v = -v;
    } else {
        char *end;
        memcpy(buf, s, n);
        buf[n] = 0;
        v = strtod(buf, &end);
        if (end != buf + n) return 0;
        double a = v < 0 ? -v : v;
        if (a >= 1e15 || (a != 0 && a < 1e-4)) return 0;
    }
    *out = v;
    if (txt) {
        size_t k = 0;
        if (neg) txt[k++] = '-';
        if (int_hi > int_lo) {
            memcpy(txt + k, s + int_lo, int_hi - int_lo);
            k += int_hi - int_lo;
        } else
            txt[k++] = '0';
        if (frac_hi > frac_lo) {
            txt[k++] = '.';
            memcpy(txt + k, s + frac_lo, frac_hi - frac_lo);
            k += frac_hi - frac_lo;
        }
        *tlen = k;
    }
    return 1;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

#define DIG(c) ((c) >= '0' && (c) <= '9')

/* exactly `YYYY-MM-DD HH:MM:SS`, valid; microseconds since 2000-01-01 */
static int parse_ts(const unsigned char *s, size_t n, int64_t *out) {
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n != 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':')
        return 0;
    static const int pos[] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18};
    for (int i = 0; i < 14; i++)
        if (!DIG(s[pos[i]])) return 0;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int mo = (s[5] - '0') * 10 + (s[6] - '0');
    int d = (s[8] - '0') * 10 + (s[9] - '0');
    int h = (s[11] - '0') * 10 + (s[12] - '0');
    int mi = (s[14] - '0') * 10 + (s[15] - '0');
    int se = (s[17] - '0') * 10 + (s[18] - '0');
    if (y < 1000 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || se > 59) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int dim = mdays[mo - 1] + (mo == 2 && leap);
    if (d > dim) return 0;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d) - 10957; /* 2000-01-01 */
    *out = ((days * 24 + h) * 60 + mi) * 60 * 1000000LL + (int64_t)se * 1000000LL;
    return 1;
}

/* ---- the block ----------------------------------------------------------------------- */

#define MAX_WIDTH 256
#define MAX_LINE (1 << 20) /* rows.MAX_RECORD */

/* per byte: 0 plain, 1 comma, 2 declined (control, quote, DEL, non-ASCII) */
static unsigned char CLASS[256];

static void init_class(void) {
    for (int c = 0; c < 256; c++) CLASS[c] = (c < 0x20 || c >= 0x7f || c == '"') ? 2 : 0;
    CLASS[','] = 1;
}

/* 0 ok, 1 not canonical */
/* ---- data checks ---------------------------------------------------------------------- */

typedef struct {
    int pickup, dropoff, fare, total, passengers, pu, dropzone;
    int64_t start, end;
    const unsigned char *known;
    size_t nknown;
    Py_ssize_t counts[5];
} Checks;

/* known: exactly the text of a known id (digits, no leading zero), as `<> ALL` tests it */
static int zone_known(const Checks *ck, const unsigned char *s, size_t n) {
    if (n == 0 || n > 9 || (n > 1 && s[0] == '0')) return 0;
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    return v < ck->nknown && ck->known[v];
}

static void count_checks(Checks *ck, const int64_t *ts, const double *num, const size_t *fl,
                         const unsigned char *const *fs) {
    if (ck->pickup >= 0 && fl[ck->pickup]) {
        int64_t p = ts[ck->pickup];
        if (p < ck->start || p >= ck->end) ck->counts[0]++;
        if (ck->dropoff >= 0 && fl[ck->dropoff] && ts[ck->dropoff] < p) ck->counts[1]++;
    }
    if (ck->fare >= 0 && ck->total >= 0 &&
        ((fl[ck->fare] && num[ck->fare] < 0) || (fl[ck->total] && num[ck->total] < 0)))
        ck->counts[2]++;
    if (ck->passengers >= 0 && !fl[ck->passengers]) ck->counts[3]++;
    if (ck->pu >= 0 && ck->dropzone >= 0 &&
        ((fl[ck->pu] && !zone_known(ck, fs[ck->pu], fl[ck->pu])) ||
         (fl[ck->dropzone] && !zone_known(ck, fs[ck->dropzone], fl[ck->dropzone]))))
        ck->counts[4]++;
}

/* Split mode (`out2` set): rows whose id starts at or above `pivot` go to `out2`, the
 * others stay in `out`, each in file order. A row's id is known only once its MD5 lane
 * batch is hashed, so rows wait in `out` (cache-hot) until every pending id is known. */
#define PENDING_MAX 64
typedef struct {
    unsigned char *out2;
    size_t o2;
    int pivot;
    size_t starts[PENDING_MAX + 1];
    int pending;
} Split;

/* Deal the pending rows (out[starts[0]..o)) out; returns the new end of `out`. */
static size_t deal(Split *sp, unsigned char *out, size_t o) {
    if (!sp->pending) return o;
    size_t oa = sp->starts[0];
    sp->starts[sp->pending] = o;
    for (int i = 0; i < sp->pending; i++) {
        size_t s = sp->starts[i], len = sp->starts[i + 1] - s;
        if (out[s + 6] < sp->pivot) {
            if (oa != s) memmove(out + oa, out + s, len);
            oa += len;
        } else {
            memcpy(sp->out2 + sp->o2, out + s, len);
            sp->o2 += len;
        }
    }
    sp->pending = 0;
    return oa;
}

static int encode_block(const unsigned char *blk, size_t n, const char *kinds, const int *hpos,
                        int nh, int width, unsigned char *out, size_t *out_len, Py_ssize_t *rows,
                        unsigned char *msg, Checks *ck, Split *sp) {
    int64_t tsv[MAX_WIDTH]; /* the row's parsed values, for the checks */
    double numv[MAX_WIDTH];
    unsigned char lane_blocks[LANES * LANE_BYTES];
    size_t lane_lens[LANES];
    char *lane_out[LANES];
    int lanes = 0;
    const unsigned char *fs[MAX_WIDTH];
    size_t fl[MAX_WIDTH];
    char htxt[MAX_WIDTH][72];
    size_t htl[MAX_WIDTH];
    signed char hashed_at[MAX_WIDTH];
    memset(hashed_at, 0, sizeof hashed_at);
    for (int h = 0; h < nh; h++) hashed_at[hpos[h]] = 1;
    size_t o = 0, p = 0;
    Py_ssize_t r = 0;
    while (p < n) {
        const unsigned char *nl = memchr(blk + p, '\n', n - p);
        size_t e = nl ? (size_t)(nl - blk) : n;
        size_t le = e; /* line end, without \r */
        if (le > p && blk[le - 1] == '\r') le--;
        if (le == p) return 1;               /* blank line */
        if (le - p > MAX_LINE) return 1;     /* longer than any record: reported by Python */
        /* split */
        int f = 0;
        size_t start = p;
        size_t i = p;
#ifdef __SSE2__
        /* 16 bytes at a time: any declined byte ends the fast path; commas by bit mask */
        const __m128i comma = _mm_set1_epi8(','), quote = _mm_set1_epi8('"');
        const __m128i space = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
        for (; i + 16 <= le; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(blk + i));
            /* signed < 0x20: control bytes and every byte >= 0x80 */
            __m128i bad = _mm_or_si128(_mm_cmplt_epi8(v, space),
                                       _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                                    _mm_cmpeq_epi8(v, del)));
            if (_mm_movemask_epi8(bad)) return 1;
            unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, comma));
            while (mask) {
                size_t at = i + (size_t)__builtin_ctz(mask);
                mask &= mask - 1;
                if (f >= width - 1) return 1;
                fs[f] = blk + start;
                fl[f] = at - start;
                f++;
                start = at + 1;
            }
        }
#endif
        for (; i < le; i++) {
            unsigned char c = CLASS[blk[i]];
            if (c == 0) continue;
            if (c == 2) return 1;
            if (f >= width - 1) return 1;
            fs[f] = blk + start;
            fl[f] = i - start;
            f++;
            start = i + 1;
        }
        fs[f] = blk + start;
        fl[f] = le - start;
        f++;
        if (f != width) return 1;
        /* row: nfields, id placeholder, fields */
        if (sp) sp->starts[sp->pending++] = o;
        out[o] = (unsigned char)((width + 1) >> 8);
        out[o + 1] = (unsigned char)(width + 1);
        o += 2;
        put32(out + o, 32);
        size_t id_at = o + 4;
        o += 36;
        for (int c = 0; c < width; c++) {
            const unsigned char *s = fs[c];
            size_t len = fl[c];
            char *txt = hashed_at[c] ? htxt[c] : NULL;
            if (len == 0) {
                put32(out + o, 0xFFFFFFFFu);
                o += 4;
                htl[c] = 0;
                continue;
            }
            switch (kinds[c]) {
            case 'C': {
                int32_t v;
                if (!parse_int(s, len, &v, txt, &htl[c])) return 1;
                put32(out + o, 4);
                put32(out + o + 4, (uint32_t)v);
                o += 8;
                break;
            }
            case 'M': {
                double v;
                uint64_t bits;
                if (!parse_num(s, len, &v, txt, &htl[c])) return 1;
                numv[c] = v;
                memcpy(&bits, &v, 8);
                put32(out + o, 8);
                put64(out + o + 4, bits);
                o += 12;
                break;
            }
            case 'S': {
                int64_t v;
                if (!parse_ts(s, len, &v)) return 1;
                tsv[c] = v;
                put32(out + o, 8);
                put64(out + o + 4, (uint64_t)v);
                o += 12;
                break;
            }
            default:
                put32(out + o, (uint32_t)len);
                copy_short(out + o + 4, s, len, blk + n);
                o += 4 + len;
                break;
            }
        }
        /* the hash message: hashed values in order, rendered */
        size_t m = 0;
        for (int h = 0; h < nh; h++) {
            int c = hpos[h];
            if (fl[c] == 0) continue;
            if (kinds[c] == 'C' || kinds[c] == 'M') {
                copy_short((unsigned char *)msg + m, (const unsigned char *)htxt[c], htl[c],
                           (const unsigned char *)htxt[c] + sizeof htxt[c]);
                m += htl[c];
            } else {
                copy_short(msg + m, fs[c], fl[c], blk + n);
                m += fl[c];
            }
        }
        if (m <= 55) { /* one MD5 block: hashed with the next rows' ids, 4 at a time */
            memcpy(lane_blocks + lanes * LANE_BYTES, msg, 56); /* m <= 55: padded after */
            lane_lens[lanes] = m;
            lane_out[lanes] = (char *)out + id_at;
            if (++lanes == LANES) {
                md5_hex_lanes(lane_blocks, lane_lens, lane_out);
                lanes = 0;
            }
        } else
            md5_hex(msg, m, (char *)out + id_at);
        if (ck) count_checks(ck, tsv, numv, fl, fs);
        r++;
        p = e + 1;
        if (sp && (lanes == 0 || sp->pending == PENDING_MAX)) {
            for (int l = 0; l < lanes; l++) /* long messages kept the lanes waiting */
                md5_hex(lane_blocks + l * LANE_BYTES, lane_lens[l], lane_out[l]);
            lanes = 0;
            o = deal(sp, out, o);
        }
    }
    for (int l = 0; l < lanes; l++) /* the last < 4 */
        md5_hex(lane_blocks + l * LANE_BYTES, lane_lens[l], lane_out[l]);
    if (sp) o = deal(sp, out, o);
    *out_len = o;
    *rows = r;
    return 0;
}

/* memoryview(obj)[:len], taking the caller's reference to obj */
static PyObject *view_of(PyObject *obj, size_t len) {
    PyObject *whole = PyMemoryView_FromObject(obj);
    Py_DECREF(obj);
    if (!whole) return NULL;
    PyObject *part = PySequence_GetSlice(whole, 0, (Py_ssize_t)len);
    Py_DECREF(whole);
    return part;
}

static PyObject *encode(PyObject *self, PyObject *args) {
    Py_buffer block, kinds, known = {0};
    PyObject *hashed, *checks = Py_None;
    int width, pivot = 0;
    if (!PyArg_ParseTuple(args, "y*y*O!i|Oi", &block, &kinds, &PyTuple_Type, &hashed, &width,
                          &checks, &pivot))
        return NULL;
    PyObject *data2 = NULL;
    PyObject *result = NULL;
    Checks ck = {0};
    Checks *ckp = NULL;
    if (checks != Py_None) {
        int cols[7];
        long long start, end;
        if (!PyArg_ParseTuple(checks, "iiiiiiiLLy*", &cols[0], &cols[1], &cols[2], &cols[3],
                              &cols[4], &cols[5], &cols[6], &start, &end, &known))
            goto done;
        for (int i = 0; i < 7; i++)
            if (cols[i] >= width) {
                PyErr_SetString(PyExc_ValueError, "check column out of range");
                goto done;
            }
        ck.pickup = cols[0], ck.dropoff = cols[1], ck.fare = cols[2], ck.total = cols[3];
        ck.passengers = cols[4], ck.pu = cols[5], ck.dropzone = cols[6];
        ck.start = (int64_t)start, ck.end = (int64_t)end;
        ck.known = known.buf, ck.nknown = (size_t)known.len;
        ckp = &ck;
    }
    int hpos[MAX_WIDTH];
    Py_ssize_t nh = PyTuple_GET_SIZE(hashed);
    if (width < 1 || width >= MAX_WIDTH || kinds.len != width || nh > MAX_WIDTH) {
        PyErr_SetString(PyExc_ValueError, "bad width, kinds or hashed");
        goto done;
    }
    for (Py_ssize_t i = 0; i < nh; i++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(hashed, i));
        if (v == -1 && PyErr_Occurred()) goto done;
        if (v < 0 || v >= width) {
            PyErr_SetString(PyExc_ValueError, "hashed position out of range");
            goto done;
        }
        hpos[i] = (int)v;
    }
    const unsigned char *blk = block.buf;
    size_t n = (size_t)block.len;
    if (n == 0 && pivot) {
        result = ckp ? Py_BuildValue("(y#y#n(nnnnn))", "", (Py_ssize_t)0, "", (Py_ssize_t)0,
                                     (Py_ssize_t)0, (Py_ssize_t)0, (Py_ssize_t)0,
                                     (Py_ssize_t)0, (Py_ssize_t)0, (Py_ssize_t)0)
                     : Py_BuildValue("(y#y#nO)", "", (Py_ssize_t)0, "", (Py_ssize_t)0,
                                     (Py_ssize_t)0, Py_None);
        goto done;
    }
    if (n == 0) {
        result = ckp ? Py_BuildValue("(y#n(nnnnn))", "", (Py_ssize_t)0, (Py_ssize_t)0,
                                     (Py_ssize_t)0, (Py_ssize_t)0, (Py_ssize_t)0,
                                     (Py_ssize_t)0, (Py_ssize_t)0)
                     : Py_BuildValue("(y#n)", "", (Py_ssize_t)0, (Py_ssize_t)0);
        goto done;
    }
    size_t lines = 0, longest = 0, last = 0;
    for (const unsigned char *nl; (nl = memchr(blk + last, '\n', n - last)) != NULL;) {
        size_t i = (size_t)(nl - blk);
        lines++;
        if (i - last > longest) longest = i - last;
        last = i + 1;
        if (last == n) break;
    }
    if (n - last > longest) longest = n - last;
    if (last < n) lines++;
    /* per row: nfields 2 + id 36 + per field <= 12 besides the text bytes of the line */
    size_t cap = n + lines * (38 + 12 * (size_t)width) + 48; /* 48: copy_short overshoots */
    /* the rows are written straight into the bytes object (not shared until returned) */
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    unsigned char *msg = malloc(2 * longest + 160); /* `.5` -> `0.5` grows a number by 1 */
    Split split = {0};
    if (pivot) {
        data2 = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
        if (data2) split.out2 = (unsigned char *)PyBytes_AS_STRING(data2);
        split.pivot = pivot;
    }
    if (!data || !msg || (pivot && !data2)) {
        Py_XDECREF(data);
        Py_CLEAR(data2);
        free(msg);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
    size_t out_len = 0;
    Py_ssize_t rows = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = encode_block(blk, n, kinds.buf, hpos, (int)nh, width, out,
                                             &out_len, &rows, msg, ckp, pivot ? &split : NULL);
    Py_END_ALLOW_THREADS free(msg);
    if (rc != 0) {
        Py_DECREF(data);
        Py_CLEAR(data2);
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    if (pivot) {
        /* Views of the whole buffers, not shrunk copies: every block then frees buffers
         * of about the same size, which malloc hands out again instead of mapping fresh
         * pages (zeroed by the kernel, a page fault each: ~8% of the load's client CPU) */
        PyObject *a = view_of(data, out_len), *b = view_of(data2, split.o2);
        if (!a || !b) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            goto done;
        }
        if (ckp)
            result = Py_BuildValue("(NNn(nnnnn))", a, b, rows, ck.counts[0], ck.counts[1],
                                   ck.counts[2], ck.counts[3], ck.counts[4]);
        else
            result = Py_BuildValue("(NNnO)", a, b, rows, Py_None);
        goto done;
    }
    if (_PyBytes_Resize(&data, (Py_ssize_t)out_len) < 0) goto done; /* data freed */
    if (ckp)
        result = Py_BuildValue("(Nn(nnnnn))", data, rows, ck.counts[0], ck.counts[1],
                               ck.counts[2], ck.counts[3], ck.counts[4]);
    else
        result = Py_BuildValue("(Nn)", data, rows);
done:
    PyBuffer_Release(&block);
    PyBuffer_Release(&kinds);
    if (known.buf) PyBuffer_Release(&known);
    return result;
}

/* md5_hex(data, lens) -> 32 hex characters per message: `data` holds the messages one
 * after another, `lens` (native int64) their byte lengths. The Parquet path's row ids. */
static PyObject *md5_hex_many(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, lens;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &lens)) return NULL;
    PyObject *result = NULL;
    size_t n = (size_t)lens.len / sizeof(int64_t);
    const int64_t *len = lens.buf;
    size_t total = 0, longest = 0;
    for (size_t i = 0; i < n; i++) {
        if (len[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "a negative length");
            goto done;
        }
        total += (size_t)len[i];
        if ((size_t)len[i] > longest) longest = (size_t)len[i];
    }
    if (lens.len % (Py_ssize_t)sizeof(int64_t) || total != (size_t)data.len) {
        PyErr_SetString(PyExc_ValueError, "the lengths do not add up to the data");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(32 * n));
    unsigned char *msg = malloc(longest + 80);
    if (!result || !msg) {
        Py_CLEAR(result);
        free(msg);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    char *out = PyBytes_AS_STRING(result);
    const unsigned char *src = data.buf;
    Py_BEGIN_ALLOW_THREADS {
        unsigned char lane_blocks[LANES * LANE_BYTES];
        size_t lane_lens[LANES];
        char *lane_out[LANES];
        int lanes = 0;
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            size_t m = (size_t)len[i];
            if (m <= 55) {
                memcpy(lane_blocks + lanes * LANE_BYTES, src + at, m);
                lane_lens[lanes] = m;
                lane_out[lanes] = out + 32 * i;
                if (++lanes == LANES) {
                    md5_hex_lanes(lane_blocks, lane_lens, lane_out);
                    lanes = 0;
                }
            } else {
                memcpy(msg, src + at, m);
                md5_hex(msg, m, out + 32 * i);
            }
            at += m;
        }
        for (int l = 0; l < lanes; l++)
            md5_hex(lane_blocks + l * LANE_BYTES, lane_lens[l], lane_out[l]);
    }
    Py_END_ALLOW_THREADS free(msg);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&lens);
    return result;
}

/* split_rows(data, pivot) -> (a, b): binary COPY rows (no header or trailer) dealt out
 * by the first byte of their first field: below `pivot` (or NULL/empty) to `a`, the
 * rest to `b`, each keeping its order. Two backends then COPY half a file each. */
static PyObject *split_rows(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    int pivot;
    if (!PyArg_ParseTuple(args, "y*i", &data, &pivot)) return NULL;
    PyObject *result = NULL;
    PyObject *a = PyBytes_FromStringAndSize(NULL, data.len);
    PyObject *b = PyBytes_FromStringAndSize(NULL, data.len);
    if (!a || !b) goto fail;
    const unsigned char *src = data.buf;
    size_t n = (size_t)data.len, at = 0, na = 0, nb = 0;
    unsigned char *oa = (unsigned char *)PyBytes_AS_STRING(a);
    unsigned char *ob = (unsigned char *)PyBytes_AS_STRING(b);
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS while (at < n) {
        size_t start = at;
        if (n - at < 2) {
            bad = 1;
            break;
        }
        int fields = (int16_t)((src[at] << 8) | src[at + 1]);
        at += 2;
        if (fields < 1) {
            bad = 1;
            break;
        }
        int first = -1;
        for (int f = 0; f < fields && !bad; f++) {
            if (n - at < 4) {
                bad = 1;
                break;
            }
            int32_t len = (int32_t)(((uint32_t)src[at] << 24) | ((uint32_t)src[at + 1] << 16) |
                                    ((uint32_t)src[at + 2] << 8) | (uint32_t)src[at + 3]);
            at += 4;
            if (len == -1) continue;
            if (len < 0 || (size_t)len > n - at) {
                bad = 1;
                break;
            }
            if (f == 0 && len > 0) first = src[at];
            at += (size_t)len;
        }
        if (bad) break;
        if (first < pivot) { /* NULL or empty too: the server names such a row */
            memcpy(oa + na, src + start, at - start);
            na += at - start;
        } else {
            memcpy(ob + nb, src + start, at - start);
            nb += at - start;
        }
    }
    Py_END_ALLOW_THREADS if (bad) {
        PyErr_SetString(PyExc_ValueError, "not binary COPY rows");
        goto fail;
    }
    if (_PyBytes_Resize(&a, (Py_ssize_t)na) < 0) {
        a = NULL;
        goto fail;
    }
    if (_PyBytes_Resize(&b, (Py_ssize_t)nb) < 0) {
        b = NULL;
        goto fail;
    }
    result = Py_BuildValue("(NN)", a, b);
    PyBuffer_Release(&data);
    return result;
fail:
    Py_XDECREF(a);
    Py_XDECREF(b);
    PyBuffer_Release(&data);
    return NULL;
}

/* use_avx2(flag) -> what it was: the 8-lane AVX2 MD5 or twice 4 lanes (the portable
 * path, which the tests run too); a CPU without AVX2 keeps the portable path */
static PyObject *use_avx2(PyObject *self, PyObject *arg) {
    (void)self;
    int want = PyObject_IsTrue(arg);
    if (want < 0) return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    int was = have_avx2;
    have_avx2 = want && __builtin_cpu_supports("avx2");
    return PyBool_FromLong(was);
#else
    return PyBool_FromLong(0);
#endif
}

static PyMethodDef methods[] = {
    {"use_avx2", use_avx2, METH_O,
     "use_avx2(flag) -> bool: hash 8 rows at once with AVX2 (where the CPU has it)"},
    {"md5_hex", md5_hex_many, METH_VARARGS,
     "md5_hex(data, lens) -> 32 lowercase hex characters per message (lens: int64)"},
    {"encode", encode, METH_VARARGS,
     "encode(block, kinds, hashed, width[, checks]) -> (binary COPY rows, rows[, counts]) "
     "or None"},
    {"encode_split", encode, METH_VARARGS,
     "encode_split(block, kinds, hashed, width, checks or None, pivot) -> (rows with ids "
     "below pivot, the rest, rows, counts or None) or None"},
    {"split_rows", split_rows, METH_VARARGS,
     "split_rows(rows, pivot) -> (rows whose first field starts below pivot, the rest)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcopy",
                                    "Canonical CSV blocks as binary COPY rows (C fast path).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__fastcopy(void) {
    init_class();
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
