package dev.faultline.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

class PagemapTest {
    private static final long PAGE = 4096;

    @Test
    void shouldTellNeverPopulatedAnonymousPagesFromTouchedOnes() {
        try (Pagemap pm = Pagemap.open(); HostMemory mem = HostMemory.anonymous(128 * PAGE)) {
            assumeTrue(pm.available(), "skipped: /proc/self/pagemap cannot be read here");
            assertEquals(-1L, pm.neverPopulated(mem, 0, 64), "a fresh mapping: nothing populated");
            mem.segment().set(ValueLayout.JAVA_LONG, 3 * PAGE + 8, 42);           // written
            long ignored = mem.segment().get(ValueLayout.JAVA_LONG, 5 * PAGE);     // read: maps the zero page
            assertEquals(0, ignored);
            assertEquals(-1L & ~(1L << 3) & ~(1L << 5), pm.neverPopulated(mem, 0, 64));
            assertEquals(-1L, pm.neverPopulated(mem, 64 * PAGE, 64), "the second half was not touched");
            assertEquals(0b1101_0111L, pm.neverPopulated(mem, 0, 8), "a short query: pages 0-7 but 3 and 5");
            mem.discard(3 * PAGE, PAGE);
            assertEquals(1L, pm.neverPopulated(mem, 3 * PAGE, 1), "a dropped page reads as zeros again");
        }
    }

    @Test
    void shouldKnowNothingAboutMemfdPagesOrBadRanges() {
        try (Pagemap pm = Pagemap.open(); HostMemory mem = HostMemory.memfd("pagemap-test", 64 * PAGE); HostMemory anon = HostMemory.anonymous(8 * PAGE)) {
            assertEquals(0, pm.neverPopulated(mem, 0, 64), "a memfd page may hold data in the page cache");
            assertThrows(IllegalArgumentException.class, () -> pm.neverPopulated(anon, 4 * PAGE, 8));
            assertThrows(IllegalArgumentException.class, () -> pm.neverPopulated(anon, 100, 1));
            assertThrows(IllegalArgumentException.class, () -> pm.neverPopulated(anon, 0, 65));
        }
    }
}
