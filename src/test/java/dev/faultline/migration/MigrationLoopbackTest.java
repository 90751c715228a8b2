package dev.faultline.migration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.kvm.HostCapabilities;
import dev.faultline.transport.Transport;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.VcpuResult;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * A guest migrated over a real loopback connection (source and destination in this JVM, each with its
 * own machine) finishes with the RAM SHA-256 of a run that was never migrated, and the transfer digest
 * proves every page arrived as the source had it.
 */
@Timeout(120)
class MigrationLoopbackTest {
    private static final long MEM = 16L << 20;

    static void requireBackend(String name) {
        if (name.equals("kvm")) {
            HostCapabilities caps = HostCapabilities.probe();
            assumeTrue(caps.kvmAvailable(), () -> "skipped: /dev/kvm is not usable: " + caps.kvmReason());
            assumeTrue(MigrationDestination.demandPagingUnavailable("kvm") == null, "skipped: userfaultfd is not available");
        }
    }

    /** Guest work sized so the guest is still running at the switch-over (KVM here runs guest code slowly). */
    static Workload workload(String name, int vcpus, String from) {
        int rounds = from.equals("kvm") ? 60 : 400;
        return Workloads.build(name, WorkloadParams.of(MEM, vcpus).withRounds(rounds).withWorkingSetPages(256));
    }

    record Outcome(MigrationSource.Result result, Map<String, Object> destination) {}

    static Outcome migrate(String from, String to, Workload w, int vcpus, int precopyRounds, long afterMillis) throws Exception {
        return migrate(from, to, w, vcpus, precopyRounds, afterMillis, true, 0);
    }

    /**
     * @param priorities raised CPU priorities for the fault path and the push (the default of the CLI)
     * @param pushRate   the source's push limit in bytes per second (0: none)
     */
    static Outcome migrate(String from, String to, Workload w, int vcpus, int precopyRounds, long afterMillis, boolean priorities,
                           long pushRate) throws Exception {
        return migrate(from, new MigrationDestination.Options(to, 10_000, Duration.ofSeconds(60), priorities), w, vcpus, precopyRounds, afterMillis,
                pushRate);
    }

    static Outcome migrate(String from, MigrationDestination.Options to, Workload w, int vcpus, int precopyRounds, long afterMillis,
                           long pushRate) throws Exception {
        return migrate(from, to, Transport.insecure(), Transport.insecure(), w, vcpus, precopyRounds, afterMillis, pushRate);
    }

    /** As above, the source connecting through {@code sourceTransport} and the destination accepting through {@code destinationTransport}. */
    static Outcome migrate(String from, MigrationDestination.Options to, Transport sourceTransport, Transport destinationTransport, Workload w,
                           int vcpus, int precopyRounds, long afterMillis, long pushRate) throws Exception {
        boolean priorities = to.priorities();
        try (ServerSocket server = MigrationDestination.listen("127.0.0.1", 0)) {
            MigrationDestination d = new MigrationDestination(to, destinationTransport, s -> { });
            CompletableFuture<Map<String, Object>> dest = serveAsync(d, server);
            MachineSpec spec = MachineSpec.of(MEM, vcpus, w.image()).withTimeout(Duration.ofSeconds(60)).withExitLogLimit(0);
            if (precopyRounds > 0) spec = spec.withMainSlot(MemslotFlags.LOG_DIRTY_PAGES, MemoryFaultHandler.NONE);
            try (Hypervisor hv = Backends.open(from); Machine m = new Machine(hv, spec)) {
                // data for the read workloads to read after the move
                for (long a = 0x400000; a < MEM; a += 4096) m.ram().segment().set(ValueLayout.JAVA_LONG, a + 8, a * 0x9E3779B97F4A7C15L);
                List<List<Long>> expected = new java.util.ArrayList<>();
                for (int v = 0; v < vcpus; v++) expected.add(w.expectedReports(v, m.ram().segment()));
                MigrationSource.Result r = new MigrationSource(new MigrationSource.Options("127.0.0.1", server.getLocalPort(), afterMillis,
                        precopyRounds, 10_000, true, Duration.ofSeconds(60), priorities, pushRate), sourceTransport, new MigrationSource.Listener() { }).migrate(m);
                assertTrue(r.ok(), r.problems().toString());
                w.verify(m.ram().segment());
                for (VcpuResult v : r.sourceRun().vcpus()) {
                    assertEquals(Workload.dwords(expected.get(v.index())).length, v.reports().length, "reports of vCPU " + v.index());
                }
                return new Outcome(r, dest.get(60, TimeUnit.SECONDS));
            }
        }
    }

    /** {@code d} serving one migration on {@code server} on another thread: its report, or its failure. */
    static CompletableFuture<Map<String, Object>> serveAsync(MigrationDestination d, ServerSocket server) {
        return CompletableFuture.supplyAsync(() -> {
            try {
                return d.serve(server);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        });
    }

    @ParameterizedTest(name = "{0}, kvm to kvm, {1} vCPUs")
    @CsvSource({"phases, 2", "hot, 2", "seq-write, 1", "seq-read, 2", "random, 1", "stride, 2", "checksum, 2"})
    void shouldEndWithEqualRamHashesForEveryWorkloadPostCopy(String name, int vcpus) throws Exception {
        requireBackend("kvm");
        Outcome o = migrate("kvm", "kvm", workload(name, vcpus, "kvm"), vcpus, 0, 30);
        Map<String, Object> f = o.result().figures();
        assertEquals(true, f.get("transfer_verified"));
        assertEquals(true, f.get("final_ram_verified"));
        assertEquals(f.get("reference_ram_sha256"), o.destination().get("ram_sha256"));
        assertEquals("post-copy", f.get("mode"));
    }

    @Test
    void shouldServeSeveralVcpusFaultingAtOnceAndInstallEachPageOnce() throws Exception {
        requireBackend("kvm");
        Outcome o = migrate("kvm", "kvm", workload("phases", 2, "kvm"), 2, 0, 20);
        Map<String, Object> d = o.destination();
        long demanded = ((Number) d.get("pages_demanded")).longValue();
        long pushedInstalled = ((Number) d.get("pages_pushed_installed")).longValue();
        long mainPages = (MEM - 0x100000) / 4096;
        assertEquals(mainPages, demanded + pushedInstalled, "every page of the paged range installed exactly once (faults + pushes)");
        List<?> lat = (List<?>) d.get("fault_latency");
        assertTrue(lat.size() >= 2, lat.toString());
        assertTrue(o.result().ok());
        // every thread of the fault path and of the transfer says what CPU priority it got
        Map<?, ?> dp = (Map<?, ?>) d.get("thread_priorities");
        assertEquals(java.util.Set.of("uffd handlers", "push installer"), dp.keySet(), dp.toString());
        Map<?, ?> sp = (Map<?, ?>) o.result().figures().get("thread_priorities");
        assertEquals(java.util.Set.of("migration-urgent-0", "migration-urgent-1", "migration-push", "switch-over (pre-copy to RESUMED)"), sp.keySet(), sp.toString());
    }

    /**
     * kvm to kvm with exit delivery at the destination: each vCPU fetches its own missing pages over its
     * own urgent connection after a memory-fault exit, at the fault path's priority while it does.
     */
    @Test
    void shouldMigrateWithEachDestinationVcpuServingItsOwnRemoteFaultsUnderExitDelivery() throws Exception {
        requireBackend("kvm");
        try (dev.faultline.kvm.KvmHypervisor kvm = dev.faultline.kvm.KvmHypervisor.open()) {
            assumeTrue(dev.faultline.paging.uffd.ExitDeliveryProbe.unavailableReason(kvm) == null, "skipped: exit delivery does not work here");
        }
        // the push held to 8 MiB/s, as in the ref test below: this test is about who serves the faults
        Outcome o = migrate("kvm", new MigrationDestination.Options("kvm", 10_000, Duration.ofSeconds(60), true, true),
                workload("phases", 2, "kvm"), 2, 0, 30, 8L << 20);
        Map<String, Object> d = o.destination();
        Map<String, Object> f = o.result().figures();
        assertEquals(true, f.get("final_ram_verified"));
        assertEquals(f.get("reference_ram_sha256"), d.get("ram_sha256"));
        assertTrue(String.valueOf(d.get("delivery")).contains("exit delivery"), String.valueOf(d.get("delivery")));
        assertBothVcpusServedFaultsAndEveryPageOnce(d);
        Map<?, ?> dp = (Map<?, ?>) d.get("thread_priorities");
        assertEquals(java.util.Set.of("vcpu threads", "push installer"), dp.keySet(), dp.toString());
        assertTrue(String.valueOf(dp.get("vcpu threads")).startsWith("SCHED_FIFO 10 while serving"), dp.toString());
    }

    /**
     * The destination's report {@code d} of a 2-vCPU post-copy where vCPUs serve their own faults:
     * faults + installed pushes = every page of the paged range, both vCPUs served faults of their
     * own, and both the faults and the push brought pages.
     */
    static void assertBothVcpusServedFaultsAndEveryPageOnce(Map<String, Object> d) {
        long demanded = ((Number) d.get("pages_demanded")).longValue();
        long pushedInstalled = ((Number) d.get("pages_pushed_installed")).longValue();
        assertEquals((MEM - 0x100000) / 4096, demanded + pushedInstalled, "every page of the paged range installed exactly once (faults + pushes)");
        long faultingVcpus = 0;
        for (Object x : (List<?>) d.get("fault_latency")) {
            Map<?, ?> m = (Map<?, ?>) x;
            if (!"unknown".equals(m.get("vcpu")) && ((Number) m.get("faults")).longValue() > 0) faultingVcpus++;
        }
        assertEquals(2, faultingVcpus, "both vCPUs served faults of their own: " + d.get("fault_latency"));
        assertTrue(demanded > 0 && pushedInstalled > 0, "demanded " + demanded + ", pushed " + pushedInstalled);
    }

    @ParameterizedTest(name = "{0} to {1}, {2} pre-copy rounds")
    @CsvSource({"kvm, kvm, 2", "ref, ref, 0", "ref, ref, 2", "kvm, ref, 0", "ref, kvm, 0", "kvm, ref, 2"})
    void shouldEndWithEqualRamHashesAcrossBackendsAndWithPrecopy(String from, String to, int rounds) throws Exception {
        requireBackend(from);
        requireBackend(to);
        Outcome o = migrate(from, to, workload("phases", 2, from), 2, rounds, from.equals("kvm") ? 30 : 10);
        Map<String, Object> f = o.result().figures();
        assertEquals(true, f.get("final_ram_verified"), f.toString());
        assertEquals(true, f.get("transfer_verified"));
        assertEquals(rounds > 0 ? "pre-copy then post-copy" : "post-copy", f.get("mode"), "every destination demand-pages");
        assertEquals(to.equals("ref") ? "post-copy (exit on missing)" : "post-copy (userfaultfd)", o.destination().get("delivery"));
        if (rounds > 0) assertTrue(((Number) f.get("pages_precopied")).longValue() > 0);
    }

    /**
     * Post-copy onto a ref destination: each vCPU serves its own memory-fault exits from the source
     * over its own urgent connection while the push is installed through FaultCore.offer; every page
     * of the paged range is installed exactly once, by a fault or by the push.
     */
    @ParameterizedTest(name = "{0} to ref, 2 vCPUs")
    @CsvSource({"kvm", "ref"})
    void shouldPostCopyToARefDestinationWithEachVcpuServingItsOwnFaults(String from) throws Exception {
        requireBackend(from);
        // a push held to 8 MiB/s: otherwise it can bring all 16 MiB across before one vCPU touches a
        // page (on a busy host), and this test is about who serves the faults
        Outcome o = migrate(from, "ref", workload("phases", 2, from), 2, 0, from.equals("kvm") ? 30 : 10, true, 8L << 20);
        Map<String, Object> f = o.result().figures();
        Map<String, Object> d = o.destination();
        assertEquals("post-copy", f.get("mode"));
        assertEquals("post-copy (exit on missing)", d.get("delivery"));
        assertEquals(true, f.get("transfer_verified"), f.toString());
        assertEquals(true, f.get("final_ram_verified"), f.toString());
        assertEquals(f.get("reference_ram_sha256"), d.get("ram_sha256"));
        assertBothVcpusServedFaultsAndEveryPageOnce(d);
    }

    @Test
    void shouldRefuseAPageOutsideRamNamingThePeerAndNeverStartTheGuest() throws Exception {
        try (ServerSocket server = MigrationDestination.listen("127.0.0.1", 0)) {
            MigrationDestination d = new MigrationDestination(new MigrationDestination.Options("ref", 5_000, Duration.ofSeconds(10), true), s -> { });
            CompletableFuture<Map<String, Object>> dest = serveAsync(d, server);
            try (Connection c = Connection.connect("127.0.0.1", server.getLocalPort(), 5_000)) {
                c.send(Protocol.HELLO, b -> Messages.hello(b, new Messages.Hello(9, Protocol.ROLE_MAIN, 0, 4096, MEM, 1, 0x100000, 0, "ref")));
                Messages.HelloAck ack = Messages.helloAck(c.receive("HELLO_ACK"), c.peer());
                assertEquals(1, ack.urgentConnections(), "a ref destination demand-pages: one urgent connection per vCPU");
                Connection u = Connection.connect("127.0.0.1", server.getLocalPort(), 5_000);
                u.send(Protocol.HELLO, b -> Messages.hello(b, new Messages.Hello(9, Protocol.ROLE_URGENT, 0, 4096, 0, 0, 0, 0, "")));
                answerWarmUps(u);
                assertEquals(Protocol.READY, c.receive("READY").type());
                // a PAGES frame, valid on the wire, for a page past the end of RAM
                c.send(Protocol.PAGES, b -> Messages.pagesHeader(b, new Messages.PagesHeader(MEM, 1, Protocol.PURPOSE_PRECOPY, 0, 1)));
                Frame err = c.receive("the destination's ERROR");
                assertEquals(Protocol.ERROR, err.type());
            }
            Exception e = assertThrows(Exception.class, () -> dest.get(30, TimeUnit.SECONDS));
            String msg = e.getCause().getMessage();
            assertTrue(msg.contains("peer 127.0.0.1:") && msg.contains("PAGES #2") && msg.contains("outside guest RAM")
                    && msg.contains("nothing of it was installed") && msg.contains("never started"), msg);
        }
    }

    /** A fake source's urgent connection: answers the destination's warm-up requests with zero pages, then nothing. */
    private static void answerWarmUps(Connection u) {
        Thread.ofPlatform().daemon().start(() -> {
            try {
                while (true) {
                    Messages.Request r = Messages.request(u.receive("request"), u.peer(), MEM);
                    u.send(Protocol.PAGES, b -> Messages.pagesHeader(b, new Messages.PagesHeader(r.gpa(), 1, Protocol.PURPOSE_REPLY, r.id(), 1)));
                }
            } catch (ProtocolException closed) {
                System.err.println("fake urgent responder ends: " + closed.getMessage());
            }
        });
    }

    @Test
    void shouldPauseAndStopTheGuestWhenAPushedMessageIsCorrupted() throws Exception {
        requireBackend("kvm");
        try (ServerSocket server = MigrationDestination.listen("127.0.0.1", 0)) {
            MigrationDestination d = new MigrationDestination(new MigrationDestination.Options("kvm", 5_000, Duration.ofSeconds(10), true), s -> { });
            CompletableFuture<Map<String, Object>> dest = serveAsync(d, server);
            Workload w = workload("phases", 1, "kvm");
            try (Hypervisor hv = Backends.open("kvm"); Machine m = new Machine(hv, MachineSpec.of(MEM, 1, w.image()));
                 SocketChannel raw = SocketChannel.open(new InetSocketAddress(InetAddress.getLoopbackAddress(), server.getLocalPort()))) {
                Connection c = new Connection(raw.socket(), 30_000);
                c.send(Protocol.HELLO, b -> Messages.hello(b, new Messages.Hello(9, Protocol.ROLE_MAIN, 0, 4096, MEM, 1, 0x100000, 0, "kvm")));
                Messages.HelloAck ack = Messages.helloAck(c.receive("HELLO_ACK"), c.peer());
                Connection u = Connection.connect("127.0.0.1", server.getLocalPort(), 5_000);
                u.send(Protocol.HELLO, b -> Messages.hello(b, new Messages.Hello(9, Protocol.ROLE_URGENT, 0, 4096, 0, 0, 0, 0, "")));
                assertEquals(1, ack.urgentConnections());
                answerWarmUps(u);
                Frame ready = c.receive("READY");
                assertEquals(Protocol.READY, ready.type(), () -> ready.type() == Protocol.ERROR ? Messages.string(ready, "", Protocol.ERROR) : ready.describe());
                Machine.Execution e = m.start();
                List<dev.faultline.vmm.VcpuState> st = e.pause(Duration.ofSeconds(5));
                for (long p = 0; p < 0x100000; p += 64 * 4096) {
                    long gpa = p;
                    c.send(Protocol.PAGES, b -> Pages.encode(b, m.ram().segment(), gpa, 64, Protocol.PURPOSE_SWITCHOVER, 0));
                }
                c.send(Protocol.STATE, b -> Messages.state(b, st));
                assertEquals(Protocol.RESUMED, c.receive("RESUMED").type());
                // a pushed page whose bytes are flipped after the CRC was computed
                byte[] frame = ProtocolTest.frame(Protocol.PAGES, 7 + 16, Protocol.VERSION, new byte[Messages.PagesHeader.BYTES + 4096]);
                frame[frame.length - 1] ^= 1;
                ProtocolTest.writeRaw(raw, frame, frame.length);
                e.stop("test over");
                e.await();
            }
            Exception ex = assertThrows(Exception.class, () -> dest.get(30, TimeUnit.SECONDS));
            String msg = ex.getCause().getMessage();
            assertTrue(msg.contains("peer 127.0.0.1:") && msg.contains("corrupted") && msg.contains("paused and stopped"), msg);
            assertFalse(msg.contains("installed 1"), msg);
        }
    }
}
