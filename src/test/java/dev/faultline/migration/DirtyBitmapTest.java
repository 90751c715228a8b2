package dev.faultline.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class DirtyBitmapTest {

    private static List<Long> scan(MemorySegment bitmap, long pages) {
        List<Long> out = new ArrayList<>();
        for (long i = MigrationSource.nextDirty(bitmap, 0, pages); i >= 0; i = MigrationSource.nextDirty(bitmap, i + 1, pages)) out.add(i);
        return out;
    }

    @Test
    void shouldFindExactlyTheSetBitsBelowTheLimit() {
        try (Arena a = Arena.ofConfined()) {
            long pages = 1000;                       // not a multiple of 64: the last word is partly outside
            MemorySegment bitmap = a.allocate(16 * 8);
            SplittableRandom r = new SplittableRandom(3);
            List<Long> want = new ArrayList<>();
            for (long i = 0; i < 16 * 64; i++) {
                boolean set = r.nextInt(7) == 0 || i == 0 || i == 63 || i == 64 || i == 999 || i == 1000 || i == 1023;
                if (!set) continue;
                long w = i >>> 6;
                bitmap.set(ValueLayout.JAVA_LONG, w * 8, bitmap.get(ValueLayout.JAVA_LONG, w * 8) | (1L << (i & 63)));
                if (i < pages) want.add(i);
            }
            assertEquals(want, scan(bitmap, pages));
            assertEquals(List.of(), scan(a.allocate(16 * 8), pages), "a clean bitmap");
        }
    }
}
