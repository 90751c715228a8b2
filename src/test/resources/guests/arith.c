/* Signed and unsigned arithmetic mixed: signed and unsigned division and remainder, narrowing and
 * widening conversions, arithmetic and logical shifts, rotates, signed and unsigned comparisons. */
typedef long i64;
typedef unsigned long u64;
typedef int i32;
typedef unsigned int u32;

long main(long index, long count) {
    u64 acc = 0x0123456789abcdefUL;
    i64 s = -1234567890123L;
    for (int i = 1; i <= 1000; i++) {
        i64 d = (i64)(i * 7919 % 2003) - 1001;
        if (d == 0) d = 1;
        i64 q = s / d, r = s % d;
        u64 uq = acc / (u64)(i | 1), ur = acc % (u64)(i | 1);
        i32 narrow = (i32)acc;
        u32 un = (u32)s;
        i64 sx = (i64)(signed char)(acc >> 8);
        u64 zx = (u64)(unsigned short)(s >> 3);
        acc = acc * 6364136223846793005UL + (u64)q + uq + ur + (u64)(i64)narrow + un + (u64)sx + zx;
        acc ^= acc >> 29;
        acc = (acc << 7) | (acc >> 57);
        s = (i64)((acc >> 1) - (u64)(r * 3));
        if (s < 0) acc += 1;
        if ((i32)acc < 0) acc += 2;
        if (un > 0x80000000u) acc += 4;
        if ((i64)acc < s) acc ^= 8;
    }
    return (long)acc;
}
