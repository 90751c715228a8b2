package dev.faultline.snapshot;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.guest.workload.Workload;
import dev.faultline.pageserver.PageServer;
import dev.faultline.paging.PageSource;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.WorkingSet;
import dev.faultline.telemetry.EventLog;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Working-set record and replay in a lazy restore, and a lazy restore whose RAM is handed to an
 * external page-fault handler as Firecracker hands it ({@code restore --uffd-handler}), served by
 * faultline's own handler: the protocol from both ends.
 */
class RestoreReplayAndHandlerTest {
    @Test
    void shouldRecordTheTouchedPagesAndReplayThemSoTheNextRestoreTakesNoFault(@TempDir Path dir) throws Exception {
        SnapshotRestoreTest.require("kvm", "lazy");
        Workload w = SnapshotRestoreTest.workload(1, "kvm");
        String expected = SnapshotRestoreTest.uninterrupted("kvm", w, 1);
        Path snap = dir.resolve("snap");
        SnapshotRestoreTest.take("kvm", w, 1, snap, true);
        Path ws = dir.resolve("ws");
        Restore.Result rec = Restore.run(snap, Restore.Options.of("kvm", Restore.Mode.LAZY).withPrefetch(Prefetch.NONE)
                .withRecording(new Restore.Recording(ws, 0)));
        assertTrue(rec.ok(), rec.comparison().verdict());
        assertEquals(expected, rec.report().ramSha256());
        assertTrue(rec.recordedPages() > 0);
        assertEquals(rec.paging().faults(), rec.recordedPages(), "every fault's page recorded once");
        WorkingSet set = WorkingSet.read(ws);
        assertEquals(rec.snapshot().ramBytes(), set.spaceBytes());

        Restore.Result replay = Restore.run(snap, Restore.Options.of("kvm", Restore.Mode.LAZY).withPrefetch(Restore.prefetchNamed("replay:" + ws)));
        assertTrue(replay.ok(), replay.comparison().verdict());
        assertEquals(expected, replay.report().ramSha256());
        assertTrue(replay.paging().faults() <= rec.paging().faults() / 10,
                "replay leaves at most a tenth of the faults: " + replay.paging().faults() + " of " + rec.paging().faults());
        assertTrue(replay.paging().prefetchPages() > 0);

        assertThrows(IllegalArgumentException.class, () -> Restore.Options.of("kvm", Restore.Mode.LAZY)
                .withRecording(new Restore.Recording(ws, 0)), "recording with readahead is refused");
    }

    @Test
    void shouldRestoreThroughAnExternalHandlerServingTheSnapshotAsFirecrackerWouldBeServed(@TempDir Path dir) throws Exception {
        SnapshotRestoreTest.require("kvm", "lazy");
        Workload w = SnapshotRestoreTest.workload(2, "kvm");
        String expected = SnapshotRestoreTest.uninterrupted("kvm", w, 2);
        Path snap = dir.resolve("snap");
        SnapshotRestoreTest.take("kvm", w, 2, snap, true);
        List<String> log = new CopyOnWriteArrayList<>();
        int uid = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        try (Snapshot s = Snapshot.open(snap)) {
            SnapshotSource pages = new SnapshotSource(s);
            PageSource source = new PageSource() {
                @Override public void fill(long gpa, MemorySegment dst, long off, long len) { pages.fill(gpa, dst, off, len); }
                @Override public boolean isZero(long gpa, long len) { return pages.isZero(gpa, len); }
                @Override public String describe() { return "snapshot"; }
            };
            try (PageServer server = PageServer.start(new PageServer.Config(dir.resolve("h.sock"), Set.of(uid), 4, source, s.ramBytes(),
                    Prefetch.NONE, null, 0, PageServer.OnFailure.CLOSE, 5000, EventLog.NONE, null, log::add))) {
                Restore.Result r = Restore.run(snap, Restore.Options.of("kvm", Restore.Mode.LAZY).withPrefetch(Prefetch.NONE)
                        .withUffdHandler(server.socket()));
                assertTrue(r.ok(), r.comparison().verdict() + "\n" + String.join("\n", log));
                assertEquals(expected, r.report().ramSha256());
                long until = System.nanoTime() + 10_000_000_000L;
                while (server.endedVms().isEmpty() && System.nanoTime() < until) Thread.sleep(5);
                PageServer.VmView vm = server.endedVms().getFirst();
                assertEquals("peer closed the socket", vm.endReason());
                assertEquals(2, vm.handshake().regions().size());
                assertTrue(new dev.faultline.paging.PagingStats(vm.core()).faults() > 0, "the handler served the guest's faults");
                assertEquals(0, r.paging().faults(), "the restoring process served none itself");
            }
        }
    }
}
