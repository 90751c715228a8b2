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
        Object[] r = onFreshThread(() -> new Object[] {ThreadPriority.FAULT_PATH.applyToCurrentThread(), Sched.current()});
        ThreadPriority.Applied a = (ThreadPriority.Applied) r[0];
        Sched s = (Sched) r[1];
        if (a.description().startsWith("SCHED_FIFO")) {
            assertEquals(new Sched(0, 1, ThreadPriority.FIFO_PRIORITY), s, a.description());
            assertTrue(a.raised());
        } else if (a.description().startsWith("nice")) {
            assertEquals(new Sched(ThreadPriority.FAULT_NICE, 0, 0), s, a.description());
            assertTrue(a.description().contains("SCHED_FIFO refused"), a.description());
        } else {
            assertEquals(new Sched(0, 0, 0), s, a.description());
            assertTrue(a.description().startsWith("default (SCHED_FIFO refused: "), a.description());
        }
    }

    @Test
    void shouldReportWhatTheKernelAppliedForTransfersAndResetAfterwards() throws Exception {
        Object[] r = onFreshThread(() -> {
            ThreadPriority.Applied a = ThreadPriority.TRANSFER.applyToCurrentThread();
            Sched during = Sched.current();
            ThreadPriority.FAULT_PATH.applyToCurrentThread();
            ThreadPriority.resetCurrentThread();
            return new Object[] {a, during, Sched.current()};
        });
        ThreadPriority.Applied a = (ThreadPriority.Applied) r[0];
        if (a.raised()) {
            assertEquals("nice " + ThreadPriority.TRANSFER_NICE, a.description());
            assertEquals(new Sched(ThreadPriority.TRANSFER_NICE, 0, 0), r[1]);
        } else {
            assertTrue(a.description().startsWith("default (nice -10 refused: "), a.description());
            assertEquals(new Sched(0, 0, 0), r[1]);
        }
        assertEquals(new Sched(0, 0, 0), r[2], "after the reset");
    }

    @Test
    void shouldRefuseASpinningFaultPathHandler() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new UffdPager.Config(UffdPager.Mode.MISSING, 1, 20_000,
                false, List.of(), UffdPager.Pinning.NONE, ThreadPriority.FAULT_PATH));
        assertTrue(e.getMessage().contains("must not spin"), e.getMessage());
    }
}
