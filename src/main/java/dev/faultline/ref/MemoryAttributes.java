package dev.faultline.ref;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Per-gfn memory attributes of a VM (KVM keeps them in an xarray indexed by gfn, independent of
 * memslots): one PRIVATE bit per gfn, in chunks of 1 GiB created on first use. Reads are lock-free
 * (the MMU's slow path); writes come from {@link RefVm#setMemoryAttributes}, serialised there.
 */
final class MemoryAttributes {
    private static final int CHUNK_SHIFT = 18;   // 2^18 pages = 1 GiB per chunk
    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);
    private final ConcurrentHashMap<Long, long[]> chunks = new ConcurrentHashMap<>();

    boolean isPrivate(long gfn) {
        long[] c = chunks.get(gfn >>> CHUNK_SHIFT);
        if (c == null) return false;
        int i = (int) (gfn & ((1 << CHUNK_SHIFT) - 1));
        return ((long) WORD.getAcquire(c, i >>> 6) & (1L << (i & 63))) != 0;
    }

    void set(long gfn, boolean priv) {
        long[] c = chunks.computeIfAbsent(gfn >>> CHUNK_SHIFT, k -> new long[(1 << CHUNK_SHIFT) >>> 6]);
        int i = (int) (gfn & ((1 << CHUNK_SHIFT) - 1));
        if (priv) WORD.getAndBitwiseOrRelease(c, i >>> 6, 1L << (i & 63));
        else WORD.getAndBitwiseAndRelease(c, i >>> 6, ~(1L << (i & 63)));
    }
}
