package dev.faultline.ref;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.Regs;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Compiled C guests (gcc -ffreestanding -mgeneral-regs-only at -O0/-O1/-O2, flat images at 0x200000)
 * compute the same value in the ref interpreter as the same C code compiled for and run on the host.
 */
class CompiledGuestTest {
    static final String PRELUDE = """
            typedef unsigned long long u64; typedef long long i64; typedef unsigned int u32; typedef int i32;
            typedef unsigned short u16; typedef short i16; typedef unsigned char u8; typedef signed char i8;
            void *memset(void *d, int c, unsigned long n) { u8 *p = d; while (n--) *p++ = (u8) c; return d; }
            void *memcpy(void *d, const void *s, unsigned long n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }
            static u64 lcg_state = 88172645463325252ULL;
            static u64 rnd(void) { lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL; return lcg_state >> 11; }
            """;

    static final String GUEST_MAIN = """
            u64 compute(void);
            void entry(void) {
              u64 r = compute();
              __asm__ volatile("mov %0, %%rax\\n out %%eax, $0xf4\\n hlt" :: "r"(r) : "rax");
              for (;;) {}
            }
            """;

    static final String NATIVE_MAIN = """
            #include <stdio.h>
            u64 compute(void);
            int main(void) { printf("%llx\\n", compute()); return 0; }
            """;

    static final String SORT = """
            #define N 3000
            static u32 a[N];
            static void qs(u32 *v, i64 lo, i64 hi) {
              while (lo < hi) {
                u32 p = v[(lo + hi) / 2]; i64 i = lo, j = hi;
                while (i <= j) { while (v[i] < p) i++; while (v[j] > p) j--; if (i <= j) { u32 t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; } }
                if (j - lo < hi - i) { qs(v, lo, j); lo = i; } else { qs(v, i, hi); hi = j; }
              }
            }
            static void isort(i32 *v, int n) { for (int i = 1; i < n; i++) { i32 x = v[i]; int j = i - 1; while (j >= 0 && v[j] > x) { v[j+1] = v[j]; j--; } v[j+1] = x; } }
            static i32 b[400];
            u64 compute(void) {
              for (int i = 0; i < N; i++) a[i] = (u32) rnd();
              qs(a, 0, N - 1);
              u64 sum = 0; int sorted = 1;
              for (int i = 0; i < N; i++) { sum += (u64) a[i] * (u64)(i + 1); if (i && a[i-1] > a[i]) sorted = 0; }
              for (int i = 0; i < 400; i++) b[i] = (i32) rnd() >> 7;
              isort(b, 400);
              for (int i = 0; i < 400; i++) sum ^= (u64)(i64) b[i] << (i % 23);
              return sum * 2 + sorted;
            }
            """;

    static final String SIEVE = """
            #define LIMIT 300000
            static u8 composite[LIMIT + 1];
            u64 compute(void) {
              u64 count = 0, sum = 0;
              for (u64 i = 2; i <= LIMIT; i++) {
                if (composite[i]) continue;
                count++; sum += i * i;
                for (u64 j = i * i; j <= LIMIT; j += i) composite[j] = 1;
              }
              return (count << 40) ^ sum;
            }
            """;

    static final String HASH = """
            static u8 buf[65536];
            static u32 crc32(const u8 *p, u64 n) {
              u32 c = 0xffffffffu;
              for (u64 i = 0; i < n; i++) { c ^= p[i]; for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & -(c & 1)); }
              return ~c;
            }
            static u64 rotl(u64 x, int r) { return (x << r) | (x >> (64 - r)); }
            u64 compute(void) {
              for (u64 i = 0; i < sizeof buf; i++) buf[i] = (u8) (rnd() >> 13);
              u64 h = 1469598103934665603ULL;
              for (u64 i = 0; i < sizeof buf; i++) { h ^= buf[i]; h *= 1099511628211ULL; }
              u64 m = 0x9e3779b97f4a7c15ULL;
              for (u64 i = 0; i + 8 <= sizeof buf; i += 8) {
                u64 k = *(u64 *)(buf + i);
                k *= 0x87c37b91114253d5ULL; k = rotl(k, 31); k *= 0x4cf5ad432745937fULL;
                m ^= k; m = rotl(m, 27) * 5 + 0x52dce729;
              }
              u32 c = crc32(buf, 4096);
              return h ^ m ^ ((u64) c << 17);
            }
            """;

    static final String ARITH = """
            u64 compute(void) {
              u64 acc = 0;
              for (int it = 0; it < 20000; it++) {
                u64 x = rnd(), y = rnd() | 1;
                i64 sx = (i64) x - (i64) (x >> 1) * 3, sy = (i64) (y % 100000) - 50000; if (sy == 0) sy = 7;
                acc += x / y + x % y;
                acc ^= (u64) (sx / sy) + (u64) (sx % sy);
                i32 a32 = (i32) x, b32 = (i32) (y >> 40) | 1;
                acc += (u64) (i64) (a32 / b32) ^ (u64) (u32) (a32 % b32);
                u32 u = (u32) x, v = (u32) (y >> 20) | 1;
                acc += u / v + (u % v) * 3;
                i16 s16 = (i16) x; i8 s8 = (i8) (x >> 8);
                acc += (u64) (i64) (s16 * s8) + (u64) (u16) (s16 >> 3) + (u64) (u8) (s8 << 2);
                acc += (x < y) + 2 * ((i64) x < (i64) y) + 4 * (a32 < b32) + 8 * (u < v) + 16 * (s16 > -5);
                u64 hi; u64 lo;
                __uint128_t p = (__uint128_t) x * y; hi = (u64) (p >> 64); lo = (u64) p;
                __int128 sp = (__int128) sx * (__int128) (i64) y; acc += hi ^ lo ^ (u64) (sp >> 64) ^ (u64) sp;
                u64 o; acc += __builtin_mul_overflow(x, y, &o) + o;
                i64 so; acc += __builtin_add_overflow(sx, (i64) y, &so) * 5 + (u64) so;
                acc += __builtin_sub_overflow((i32) x, (i32) y, &a32) + (u64) (u32) a32;
                acc = (acc << (x & 7)) | (acc >> (64 - (x & 7) - 1) >> 1);
                acc += (u64) ((i64) acc >> (y & 31)) + (acc >> (x & 63));
                acc += x > y ? x - y : y - x;
                acc += (i64) x > 0 ? 1 : (i64) x < 0 ? 2 : 3;
              }
              return acc;
            }
            """;

    static final String BITS = """
            u64 compute(void) {
              u64 acc = 0;
              for (int it = 0; it < 20000; it++) {
                u64 x = rnd() * (it + 1), y = rnd() >> (it & 31);
                acc += __builtin_popcountll(x) + __builtin_popcount((u32) y) * 3;
                if (x) acc += __builtin_ctzll(x) * 5 + __builtin_clzll(x) * 7;
                if ((u32) y) acc += __builtin_ctz((u32) y) * 11 + __builtin_clz((u32) y) * 13;
                acc ^= __builtin_bswap64(acc) + __builtin_bswap32((u32) x);
                acc += (x >> (y & 63)) & 1 ? 17 : 19;
                acc += ((x & (1ULL << (y & 63))) != 0) * 23;
              }
              return acc;
            }
            """;

    static final String STRIDE = """
            #define PAGES 2048
            static u8 area[PAGES * 4096] __attribute__((aligned(4096)));
            u64 compute(void) {
              for (u64 p = 0; p < PAGES; p++) *(u64 *)(area + p * 4096 + (p * 72) % 4000) = p * 0x1234567ULL;
              u64 sum = 0;
              for (u64 r = 0; r < 3; r++)
                for (u64 p = 0; p < PAGES; p += 1 + r) sum += *(u64 *)(area + p * 4096 + (p * 72) % 4000) ^ r;
              return sum;
            }
            """;

    static void check(String program, String opt) {
        String src = PRELUDE + program;
        String nativeOut = Toolchain.runNative("typedef unsigned long long u64;\n" + NATIVE_MAIN, "prog.c", src);
        long expected = Long.parseUnsignedLong(nativeOut.trim(), 16);
        Toolchain.Image img = Toolchain.compileC(src + GUEST_MAIN, opt);
        try (GuestMachine m = new GuestMachine(64L << 20, img, 1)) {
            GuestMachine.Result r = m.runUntilDone(0, 100);
            assertTrue(r.done(), () -> "guest did not report done: " + r);
            Regs regs = m.regs();
            assertEquals(Long.toHexString(expected), Long.toHexString(regs.rax()), "rax at -" + opt);
        }
    }

    @ParameterizedTest @ValueSource(strings = {"-O0", "-O1", "-O2"})
    void shouldSortLikeTheHost(String opt) { check(SORT, opt); }

    @ParameterizedTest @ValueSource(strings = {"-O0", "-O1", "-O2"})
    void shouldSieveLikeTheHost(String opt) { check(SIEVE, opt); }

    @ParameterizedTest @ValueSource(strings = {"-O0", "-O1", "-O2"})
    void shouldHashLikeTheHost(String opt) { check(HASH, opt); }

    @ParameterizedTest @ValueSource(strings = {"-O0", "-O1", "-O2"})
    void shouldDoSignedAndUnsignedArithmeticLikeTheHost(String opt) { check(ARITH, opt); }

    @ParameterizedTest @ValueSource(strings = {"-O0 -mpopcnt -mlzcnt", "-O2 -mpopcnt -mlzcnt"})
    void shouldComputeBitBuiltinsLikeTheHost(String opt) { check(BITS, opt); }

    @ParameterizedTest @ValueSource(strings = {"-O0", "-O2"})
    void shouldReadBackPageStridedStoresLikeTheHost(String opt) { check(STRIDE, opt); }
}
