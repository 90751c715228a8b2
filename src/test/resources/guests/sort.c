/* Sorts 2000 pseudo-random numbers with quicksort; returns -1 if the result is not sorted,
 * else a polynomial hash of the sorted array. Exercises recursion, the stack and .bss. */
typedef unsigned long u64;

#define N 2000
static u64 values[N];

static void quicksort(u64 *v, long lo, long hi) {
    while (lo < hi) {
        u64 pivot = v[(lo + hi) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                u64 t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (j - lo < hi - i) {
            quicksort(v, lo, j);
            lo = i;
        } else {
            quicksort(v, i, hi);
            hi = j;
        }
    }
}

long main(long index, long count) {
    u64 x = 12345 + (u64)index;
    for (long i = 0; i < N; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        values[i] = x >> 33;
    }
    quicksort(values, 0, N - 1);
    u64 h = 0;
    for (long i = 0; i < N; i++) {
        if (i > 0 && values[i - 1] > values[i]) return -1;
        h = h * 31 + values[i];
    }
    return (long)h;
}
