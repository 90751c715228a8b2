package dev.faultline.vmm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.paging.uffd.UffdPager;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.FutureTask;
import org.junit.jupiter.api.Test;

/** What {@link ThreadPriority} reports must be what the kernel then says about the thread. */
class ThreadPriorityTest {

    /** nice, scheduling policy and real-time priority of the calling thread, from /proc/thread-self/stat. */
    record Sched(int nice, int policy, int rtPriority) {
        static Sched current() throws Exception {
            String stat = Files.readString(Path.of("/proc/thread-self/stat"));
            // field N of proc(5) is f[N - 3]: the split starts after the command name, which may hold spaces
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            return new Sched(Integer.parseInt(f[19 - 3]), Integer.parseInt(f[41 - 3]), Integer.parseInt(f[40 - 3]));
        }
    }

    private static <T> T onFreshThread(Callable<T> body) throws Exception {
        FutureTask<T> t = new FutureTask<>(body);
        Thread.ofPlatform().start(t).join();
        return t.get();
    }

    @Test
    void shouldReportWhatTheKernelAppliedForTheFaultPath() throws Exception {
        Object[] r = onFreshThread(() -> new Object[] {ThreadPriority.FAULT_PATH.applyAndDescribe(), Sched.current()});
        String got = (String) r[0];
        if (got.equals("SCHED_FIFO 10")) {
            assertEquals(new Sched(0, 1, 10), r[1], got);
        } else {
            assertTrue(got.startsWith("normal (SCHED_FIFO 10 refused: "), got);
            assertEquals(new Sched(0, 0, 0), r[1], got);
        }
    }

    @Test
    void shouldReportWhatTheKernelAppliedForTransfersAndResetAfterwards() throws Exception {
        Object[] r = onFreshThread(() -> {
            String got = ThreadPriority.TRANSFER.applyAndDescribe();
            Sched during = Sched.current();
            ThreadPriority.FAULT_PATH.applyToCurrentThread();
            ThreadPriority.resetCurrentThread();
            return new Object[] {got, during, Sched.current()};
        });
        String got = (String) r[0];
        if (got.equals("nice -10")) {
            assertEquals(new Sched(-10, 0, 0), r[1]);
        } else {
            assertTrue(got.startsWith("normal (nice -10 refused: "), got);
            assertEquals(new Sched(0, 0, 0), r[1]);
        }
        assertEquals(new Sched(0, 0, 0), r[2], "after the reset");
    }

    @Test
    void shouldRunAnIdleThreadUnderSchedIdleAndResetIt() throws Exception {
        Object[] r = onFreshThread(() -> {
            String got = ThreadPriority.IDLE.applyAndDescribe();
            Sched during = Sched.current();
            ThreadPriority.resetCurrentThread();
            return new Object[] {got, during, Sched.current()};
        });
        assertEquals("SCHED_IDLE", r[0], "lowering a thread's policy needs no privilege");
        assertEquals(new Sched(0, 5, 0), r[1]);
        assertEquals(new Sched(0, 0, 0), r[2], "after the reset");
    }

    @Test
    void shouldParseTheCommandLineFormAndRefuseNonsense() {
        assertEquals(ThreadPriority.NORMAL, ThreadPriority.parse("normal"));
        assertEquals(ThreadPriority.nice(-5), ThreadPriority.parse("nice:-5"));
        assertEquals(ThreadPriority.fifo(10), ThreadPriority.parse(" FIFO:10 "));
        assertEquals(ThreadPriority.IDLE, ThreadPriority.parse("idle"));
        for (String bad : new String[] {"fifo:0", "fifo:100", "nice:20", "nice:x", "rt:5", "idle:3", ""}) {
            assertThrows(IllegalArgumentException.class, () -> ThreadPriority.parse(bad), bad);
        }
    }

    @Test
    void shouldRefuseASpinningFifoHandler() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new UffdPager.Config(UffdPager.Mode.MISSING, 1, 20_000,
                false, List.of(), UffdPager.Pinning.NONE, ThreadPriority.FAULT_PATH, UffdPager.Waiting.POLL));
        assertTrue(e.getMessage().contains("must not spin"), e.getMessage());
    }
}
