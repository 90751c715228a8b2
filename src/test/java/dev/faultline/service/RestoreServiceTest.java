package dev.faultline.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Hypervisor;
import dev.faultline.kvm.HostCapabilities;
import dev.faultline.snapshot.Restore;
import dev.faultline.snapshot.SnapshotDescription;
import dev.faultline.snapshot.SnapshotFormat;
import dev.faultline.snapshot.SnapshotTaker;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Userfaultfd;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The restore service over its Unix socket: what it answers, what it refuses, and that it keeps serving. */
class RestoreServiceTest {
    static final long MEM = 8L << 20;

    static SnapshotDescription take(String backend, Path dir) {
        Workload w = Workloads.build("phases", WorkloadParams.of(MEM, 1).withRounds(backend.equals("ref") ? 20 : 3));
        try (Hypervisor hv = Backends.open(backend); Machine m = new Machine(hv, MachineSpec.of(MEM, 1, w.image()))) {
            return SnapshotTaker.take(m, hv.name(), SnapshotDescription.Point.atExit(0, 3), SnapshotDescription.Guest.workload(w.name(), w.params()),
                    dir, true, Duration.ofMinutes(1)).written().description();
        }
    }

    static RestoreService start(Path socket, String backend, int warmUp, long max, List<String> log) {
        return RestoreService.start(new RestoreService.Config(socket, backend, warmUp, max, line -> {
            synchronized (log) {
                log.add(line);
            }
        }));
    }

    static String request(Path dir, String mode) {
        return ServiceRequest.restoreLine(dir, Restore.Mode.named(mode), null, null, "readahead", 1, null, 60);
    }

    @Test
    void shouldAnswerEachRestoreWithTheReportOfALocalRestoreAndTheRequestsTime(@TempDir Path tmp) {
        SnapshotDescription d = take("ref", tmp.resolve("snap"));
        List<String> log = new ArrayList<>();
        try (RestoreService s = start(tmp.resolve("rs.sock"), "ref", 2, 0, log); RestoreClient c = RestoreClient.connect(tmp.resolve("rs.sock"))) {
            assertEquals(2, s.warmUp().restores());
            assertEquals("lazy", s.warmUp().mode());
            for (int i = 1; i <= 3; i++) {
                Map<String, Object> r = c.send(request(tmp.resolve("snap"), i == 2 ? "eager" : "lazy"));
                assertEquals(true, r.get("ok"), r.toString());
                assertEquals("ref", r.get("backend"));
                assertEquals(i == 2 ? "eager" : "lazy", r.get("mode"));
                Map<?, ?> cmp = (Map<?, ?>) r.get("comparison");
                assertEquals(d.originalRun().ramSha256(), cmp.get("ram_sha256"));
                assertEquals(true, cmp.get("ram_matches"));
                Map<?, ?> svc = (Map<?, ?>) r.get("service");
                double first = ((Number) svc.get("request_to_first_instruction_ms")).doubleValue();
                double inRestore = ((Number) ((Map<?, ?>) r.get("timings")).get("to_first_instruction_ms")).doubleValue();
                assertTrue(first >= inRestore && first > 0, "from the request " + first + " ms, from the restore's start " + inRestore + " ms");
                assertTrue(((Number) svc.get("request_to_end_ms")).doubleValue() >= first);
                assertEquals(i, ((Number) svc.get("restores_served")).intValue(), "the warm-up's restores are not counted");
                assertEquals(true, svc.get("vm_built_ahead"), "the warm-up's snapshot has the same RAM size: a VM of that size is ready");
            }
            assertEquals(3, s.restoresServed());
        }
        assertEquals(3, log.stream().filter(l -> l.startsWith("restore ")).count(), log.toString());
        assertFalse(Files.exists(tmp.resolve("rs.sock")), "the socket file exists only while the service listens");
    }

    @Test
    void shouldKeepServingAfterARefusedSnapshotAndABadRequest(@TempDir Path tmp) throws IOException {
        take("ref", tmp.resolve("good"));
        take("ref", tmp.resolve("bad"));
        try (RandomAccessFile f = new RandomAccessFile(tmp.resolve("bad").resolve(SnapshotFormat.MEMORY_FILE).toFile(), "rw")) {
            f.setLength(f.length() - 4096);
        }
        try (RestoreService _ = start(tmp.resolve("rs.sock"), "ref", 0, 0, new ArrayList<>());
             RestoreClient c = RestoreClient.connect(tmp.resolve("rs.sock"))) {
            Map<String, Object> refused = c.send(request(tmp.resolve("bad"), "lazy"));
            assertEquals(false, refused.get("ok"));
            assertEquals("refused", refused.get("error_kind"));
            assertTrue(refused.get("error").toString().contains(SnapshotFormat.MEMORY_FILE), refused.toString());

            Map<String, Object> bad = c.send("{\"dir\": \"/x\", \"mode\": \"lazy\", \"colour\": 1}");
            assertEquals("bad-request", bad.get("error_kind"));
            assertTrue(bad.get("error").toString().contains("unknown field 'colour'"), bad.toString());

            Map<String, Object> missing = c.send(request(tmp.resolve("nothing-here"), "eager"));
            assertEquals("refused", missing.get("error_kind"), missing.toString());

            Map<String, Object> ok = c.send(request(tmp.resolve("good"), "lazy"));
            assertEquals(true, ok.get("ok"), ok.toString());

            Map<String, Object> status = c.send("{\"op\":\"status\"}");
            assertEquals(true, status.get("ok"));
            assertEquals(MEM, ((Number) status.get("vm_ready_for_ram_bytes")).longValue(), "a VM is built ahead for the last restore's size");
            assertEquals(5, ((Number) status.get("requests")).intValue());
            assertEquals(1, ((Number) status.get("restores_served")).intValue(), "refusals are not restores served");
            assertEquals(false, status.get("restoring"));
        }
    }

    @Test
    void shouldHoldItsSocketAloneAndReplaceOnlyAStaleOne(@TempDir Path tmp) throws Exception {
        Path sock = tmp.resolve("rs.sock");
        Path file = tmp.resolve("plain");
        Files.writeString(file, "not a socket");
        IllegalArgumentException notSocket = assertThrows(IllegalArgumentException.class, () -> start(file, "ref", 0, 0, new ArrayList<>()));
        assertTrue(notSocket.getMessage().contains("exists and is not a socket"), notSocket.getMessage());
        assertEquals("not a socket", Files.readString(file), "a file that is not a socket is left alone");
        IllegalArgumentException noDir = assertThrows(IllegalArgumentException.class,
                () -> start(tmp.resolve("no/such/dir/rs.sock"), "ref", 0, 0, new ArrayList<>()));
        assertTrue(noDir.getMessage().contains("does not exist"), noDir.getMessage());
        IllegalArgumentException tooLong = assertThrows(IllegalArgumentException.class,
                () -> start(tmp.resolve("s".repeat(120) + ".sock"), "ref", 5, 0, new ArrayList<>()));
        assertTrue(tooLong.getMessage().contains("holds at most 107"), tooLong.getMessage());

        try (RestoreService _ = start(sock, "ref", 0, 0, new ArrayList<>())) {
            IllegalArgumentException twice = assertThrows(IllegalArgumentException.class, () -> start(sock, "ref", 0, 0, new ArrayList<>()));
            assertTrue(twice.getMessage().contains("already listens"), twice.getMessage());
        }
        // A socket file that no one listens on any more (a service killed hard) is replaced.
        try (var stale = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            stale.bind(java.net.UnixDomainSocketAddress.of(sock));
        }
        assertTrue(Files.exists(sock));
        try (RestoreService _ = start(sock, "ref", 0, 0, new ArrayList<>()); RestoreClient c = RestoreClient.connect(sock)) {
            assertEquals(true, c.send("{\"op\":\"status\"}").get("ok"));
        }
        IllegalArgumentException gone = assertThrows(IllegalArgumentException.class, () -> RestoreClient.connect(sock));
        assertTrue(gone.getMessage().contains("faultline serve --socket " + sock), gone.getMessage());
    }

    @Test
    void shouldEndAfterItsLastAllowedRestoreHasBeenAnswered(@TempDir Path tmp) {
        take("ref", tmp.resolve("snap"));
        Path sock = tmp.resolve("rs.sock");
        RestoreService s = start(sock, "ref", 0, 2, new ArrayList<>());
        try (RestoreClient c = RestoreClient.connect(sock)) {
            assertEquals(true, c.send(request(tmp.resolve("snap"), "eager")).get("ok"));
            assertEquals(true, c.send(request(tmp.resolve("snap"), "eager")).get("ok"), "the last restore is answered");
            assertTimeoutPreemptively(Duration.ofSeconds(10), s::awaitEnd);
            assertThrows(RuntimeException.class, () -> c.send("{\"op\":\"status\"}"), "no request is read after the end");
        }
        assertFalse(Files.exists(sock));
    }

    @Test
    void shouldStopWhenAClientAsksAndRemoveItsSocket(@TempDir Path tmp) {
        Path sock = tmp.resolve("rs.sock");
        List<String> log = new ArrayList<>();
        RestoreService s = start(sock, "ref", 0, 0, log);
        try (RestoreClient c = RestoreClient.connect(sock)) {
            Map<String, Object> r = c.send("{\"op\": \"stop\"}");
            assertEquals(true, r.get("ok"));
            assertEquals("stop", r.get("op"));
            assertTimeoutPreemptively(Duration.ofSeconds(10), s::awaitEnd);
        }
        assertFalse(Files.exists(sock));
        assertTrue(log.contains("stopping: asked by a client"), log.toString());
    }

    /**
     * A long-lived VMM process must give back what each restore took: on kvm, lazily (userfaultfd,
     * KVM and memory descriptors, handler and vCPU threads), the same count after further restores.
     */
    @Test
    void shouldLeakNeitherDescriptorsNorThreadsOverManyKvmRestores(@TempDir Path tmp) {
        HostCapabilities caps = HostCapabilities.probe();
        assumeTrue(caps.kvmAvailable(), () -> "skipped: /dev/kvm is not usable: " + caps.kvmReason());
        try {
            Userfaultfd.open().close();
        } catch (ErrnoException e) {
            assumeTrue(false, "skipped: userfaultfd is not usable: " + e.getMessage());
        }
        take("kvm", tmp.resolve("snap"));
        try (RestoreService _ = start(tmp.resolve("rs.sock"), "kvm", 2, 0, new ArrayList<>()); RestoreClient c = RestoreClient.connect(tmp.resolve("rs.sock"))) {
            assertEquals(true, c.send(request(tmp.resolve("snap"), "lazy")).get("ok"));
            long fds = openDescriptors(), threads = liveThreads();
            for (int i = 0; i < 6; i++) {
                Map<String, Object> r = c.send(request(tmp.resolve("snap"), i % 3 == 2 ? "eager" : "lazy"));
                assertEquals(true, r.get("ok"), r.toString());
            }
            assertEquals(fds, settled(fds, RestoreServiceTest::openDescriptors), "open file descriptors after 6 more restores");
            assertEquals(threads, settled(threads, RestoreServiceTest::liveThreads), "live threads after 6 more restores");
        }
    }

    /** The count once it is back at {@code expected}, or after 5 s: a thread that has done its work may take a moment to end. */
    private static long settled(long expected, java.util.function.LongSupplier count) {
        long deadline = System.nanoTime() + 5_000_000_000L, n;
        while ((n = count.getAsLong()) != expected && System.nanoTime() < deadline) sleepBriefly();
        return n;
    }

    private static void sleepBriefly() {
        try {
            Thread.sleep(20);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static long openDescriptors() {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static long liveThreads() {
        return Thread.getAllStackTraces().keySet().stream().filter(Thread::isAlive).count();
    }
}
