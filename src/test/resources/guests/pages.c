/* Page-strided memory traffic above the image: vCPU `index` owns 4 MiB at 0x400000 + index * 4 MiB.
 * Pass 1 writes two words in every page (offsets 0 and 2048), pass 2 reads them back from the last
 * page to the first. Returns the sum of what pass 2 read. */
typedef unsigned long u64;

#define BASE 0x400000UL
#define SPAN (4UL << 20)
#define PAGE 4096UL

long main(long index, long count) {
    volatile u64 *mem = (volatile u64 *)(BASE + (u64)index * SPAN);
    u64 pages = SPAN / PAGE;
    for (u64 p = 0; p < pages; p++) {
        u64 gpa = (u64)mem + p * PAGE;
        mem[p * PAGE / 8] = gpa ^ 0x5a5a5a5a5a5a5a5aUL;
        mem[p * PAGE / 8 + 256] = gpa * 3 + (u64)count;
    }
    u64 sum = 0;
    for (u64 p = pages; p-- > 0;) sum += mem[p * PAGE / 8] + mem[p * PAGE / 8 + 256];
    return (long)sum;
}
