package dev.faultline.paging;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class PageStatesTest {

    @Test
    void shouldCountPresentPagesThroughEveryTransition() {
        PageStates s = new PageStates(16);
        assertEquals(0, s.countPresent());
        assertEquals(4, s.claimRun(2, 4, 16));
        s.markPresent(2, 4);
        assertEquals(4, s.countPresent());
        s.markPresent(2, 4);                       // already PRESENT: not counted twice
        assertEquals(4, s.countPresent());
        s.markPresent(10, 2);                      // never claimed (MISSING): stays MISSING
        assertEquals(4, s.countPresent());
        assertTrue(s.reclaim(3));
        assertFalse(s.reclaim(3));
        assertEquals(3, s.countPresent());
        s.reset(0, 5);                             // pages 2 and 4 were PRESENT, 3 FETCHING
        assertEquals(1, s.countPresent());
        assertTrue(s.claim(12));
        assertEquals(4, s.markPresentBeforeStart(11, 5));  // 11, 13, 14, 15; 12 is FETCHING and stays so
        assertEquals(PageStates.FETCHING, s.get(12));
        assertEquals(5, s.countPresent());
        assertEquals(s.scanPresent(), s.countPresent());
    }

    @Test
    void shouldKeepTheCountEqualToAScanUnderConcurrentChanges() throws Exception {
        PageStates s = new PageStates(4096);
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            long seed = t;
            threads.add(Thread.ofPlatform().start(() -> {
                SplittableRandom r = new SplittableRandom(seed);
                for (int i = 0; i < 200_000; i++) {
                    long p = r.nextInt(4096);
                    int n = 1 + r.nextInt(8);
                    switch (r.nextInt(4)) {
                        case 0, 1 -> {
                            int c = s.claimRun(p, n, 4096);
                            s.markPresent(p, c);
                        }
                        case 2 -> {
                            if (s.reclaim(p)) s.markPresent(p, 1);
                        }
                        default -> s.reset(p, Math.min(n, 4096 - p));
                    }
                }
            }));
        }
        for (Thread t : threads) t.join();
        assertEquals(s.scanPresent(), s.countPresent());
        assertTrue(s.countPresent() > 0);
    }
}
