/* Sieve of Eratosthenes up to 200000; returns (count << 40) | sum of the primes. */
typedef unsigned long u64;

#define LIMIT 200000
static unsigned char composite[LIMIT + 1];

long main(long index, long count) {
    u64 primes = 0, sum = 0;
    for (u64 i = 2; i <= LIMIT; i++) {
        if (composite[i]) continue;
        primes++;
        sum += i;
        for (u64 j = i * i; j <= LIMIT; j += i) composite[j] = 1;
    }
    return (long)(primes << 40 | sum);
}
