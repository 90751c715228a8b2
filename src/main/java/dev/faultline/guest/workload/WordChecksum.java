package dev.faultline.guest.workload;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The checksum the "checksum" workload computes in the guest: 64-bit FNV-1a taken over 64-bit
 * little-endian words instead of bytes, in address order:
 * {@code h = 0xcbf29ce484222325; for each word w: h = (h ^ w) * 0x100000001b3 (mod 2^64)}.
 * Word-wise so that the guest spends two instructions per 8 bytes.
 */
public final class WordChecksum {
    private WordChecksum() {}

    public static final long OFFSET_BASIS = 0xcbf29ce484222325L;
    public static final long PRIME = 0x100000001b3L;

    /** Checksum of {@code [from, to)} of {@code ram} (offset = gpa); both 8-byte aligned. */
    public static long of(MemorySegment ram, long from, long to) {
        if ((from & 7) != 0 || (to & 7) != 0 || to < from) {
            throw new IllegalArgumentException("checksum range [0x" + Long.toHexString(from) + ", 0x" + Long.toHexString(to)
                    + ") is not a range of whole 8-byte words");
        }
        long h = OFFSET_BASIS;
        for (long a = from; a < to; a += 8) {
            h = (h ^ ram.get(ValueLayout.JAVA_LONG_UNALIGNED, a)) * PRIME;
        }
        return h;
    }

    /** Checksum of a word array, for tests. */
    public static long of(long[] words) {
        long h = OFFSET_BASIS;
        for (long w : words) h = (h ^ w) * PRIME;
        return h;
    }
}
