package dev.faultline.guest.workload;

import static dev.faultline.guest.asm.Mem.*;
import static dev.faultline.guest.asm.Reg.*;

import dev.faultline.guest.asm.Label;

/**
 * random: each vCPU stamps every page of its slice exactly once, in a seeded pseudo-random order.
 *
 * <p>The order comes from a full-period LCG over the next power of two M >= N (the slice's pages):
 * {@code x = (x * A + c_v) mod M}, with {@code A = 1 mod 4} and {@code c_v} odd, visits every value
 * of [0, M) once per period. Each x goes through a bijection of [0, M) to break the LCG's low-bit
 * pattern ({@code y = (x * B) mod M; y ^= y >> s}), and values {@code y >= N} are skipped, so the
 * first N accepted values are a permutation of the slice. {@code x0_v} and {@code c_v} derive from the
 * seed and the vCPU index, so one seed gives every vCPU its own order, the same on every run.
 * {@link #pageOrder} computes the same sequence in Java.
 */
public final class RandomTouch extends BaseWorkload {
    static final long A = 1103515245L;
    static final long B = 0x2545f491L;

    private final long mask;
    private final int shift;
    private final long[] x0, c;

    RandomTouch(WorkloadParams params) {
        super("random", params);
        long n = layout.pagesPerVcpu();
        int bits = 64 - Long.numberOfLeadingZeros(n - 1); // M = 2^bits >= n
        mask = (1L << bits) - 1;
        shift = Math.max(1, (bits + 1) / 2);
        x0 = new long[layout.vcpus()];
        c = new long[layout.vcpus()];
        for (int v = 0; v < x0.length; v++) {
            x0[v] = mix(params.seed() * 2 + 1 + 0x9e3779b97f4a7c15L * v) & mask;
            c[v] = mix(params.seed() ^ (0xbf58476d1ce4e5b9L * (v + 1))) | 1;
        }
        build();
    }

    @Override
    void body(GuestCode g) {
        var a = g.a;
        Label tx0 = g.table("x0", x0), tc = g.table("c", c);
        a.lea(RBX, addr(tx0)).mov(RAX, m64(RBX, RDI, 8, 0))
                .lea(RBX, addr(tc)).mov(R9, m64(RBX, RDI, 8, 0))
                .mov(R10, g.constant(mask)).mov(R11, g.constant(layout.pagesPerVcpu())).mov(RCX, R11);
        Label loop = a.here();
        a.imul(RAX, RAX, A).add(RAX, R9).and(RAX, R10)
                .imul(RDX, RAX, B).and(RDX, R10).mov(RBX, RDX).shr(RBX, shift).xor(RDX, RBX)
                .cmp(RDX, R11).jae(loop)
                .shl(RDX, 12).add(RDX, R12).lea(RBX, addr(RDX, R14, 1, 0)).mov(m64(RDX), RBX)
                .dec(RCX).jnz(loop);
    }

    /** Page indices (within the slice) in the order vCPU {@code vcpu} stamps them: a permutation of [0, pages). */
    public long[] pageOrder(int vcpu) {
        requireVcpu(vcpu);
        long n = layout.pagesPerVcpu();
        long[] order = new long[Math.toIntExact(n)];
        long x = x0[vcpu];
        for (int k = 0; k < n; ) {
            x = (x * A + c[vcpu]) & mask;
            long y = (x * B) & mask;
            y ^= y >>> shift;
            if (y < n) order[k++] = y;
        }
        return order;
    }

    @Override
    long expectedWord(int vcpu, long page) {
        return PageStamp.of(layout.sliceStart(vcpu) + page * RegionLayout.PAGE, vcpu, 0);
    }

    @Override
    public long touchesPerVcpu() { return layout.pagesPerVcpu(); }

    @Override
    String parameters() { return ", seed " + params.seed(); }

    /** splitmix64's finaliser. */
    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }
}
