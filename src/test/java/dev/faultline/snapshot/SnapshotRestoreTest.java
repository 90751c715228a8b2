package dev.faultline.snapshot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.Vm;
import dev.faultline.kvm.HostCapabilities;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageStates;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.exit.ExitPager;
import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Userfaultfd;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuOutcome;
import dev.faultline.vmm.VcpuResult;
import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * A guest snapshotted mid-run and restored, eagerly or lazily, on the same or the other backend,
 * ends exactly as a run that was never interrupted; a bad snapshot never runs.
 */
class SnapshotRestoreTest {
    private static final long MEM = 8L << 20;
    private static final Duration TIMEOUT = Duration.ofSeconds(30);

    /**
     * phases reports each phase number (two OUTs each), so exit 3 of vCPU 0 (the start of phase 1) is a
     * deterministic mid-run point. Enough rounds per phase on ref that another vCPU cannot have finished
     * all eight phases by then; fewer on kvm, which runs guest code far slower here.
     */
    static Workload workload(int vcpus, String takenOn) {
        return Workloads.build("phases", WorkloadParams.of(MEM, vcpus).withRounds(takenOn.equals("ref") ? 60 : 3));
    }

    static Workload workload(int vcpus) {
        return workload(vcpus, "ref");
    }

    static void requireKvm() {
        HostCapabilities caps = HostCapabilities.probe();
        assumeTrue(caps.kvmAvailable(), () -> "skipped: /dev/kvm is not usable: " + caps.kvmReason());
    }

    static void requireUserfaultfd() {
        try {
            Userfaultfd.open().close();
        } catch (ErrnoException e) {
            assumeTrue(false, "skipped: userfaultfd is not usable: " + e.getMessage());
        }
    }

    static void require(String backend, String mode) {
        if (backend.equals("kvm")) requireKvm();
        if (backend.equals("kvm") && mode.equals("lazy")) requireUserfaultfd();
    }

    static String uninterrupted(String backend, Workload w, int vcpus) {
        try (Hypervisor hv = Backends.open(backend); Machine m = new Machine(hv, MachineSpec.of(MEM, vcpus, w.image()))) {
            RunReport r = m.run();
            assertTrue(r.clean(), r.vcpus().toString());
            return r.ramSha256();
        }
    }

    /**
     * Takes the snapshot at vCPU 0's third exit. With several vCPUs another one may, when the host
     * deschedules vCPU 0 (a JIT pause on a busy 2-core machine), finish its whole run first; the taker
     * then rightly refuses the point, and the snapshot is taken again from a fresh machine.
     */
    static SnapshotDescription take(String backend, Workload w, int vcpus, Path dir, boolean finish) {
        for (int attempt = 1; ; attempt++) {
            try (Hypervisor hv = Backends.open(backend); Machine m = new Machine(hv, MachineSpec.of(MEM, vcpus, w.image()))) {
                SnapshotTaker.Taken t = SnapshotTaker.take(m, hv.name(), SnapshotDescription.Point.atExit(0, 3),
                        SnapshotDescription.Guest.workload(w.name(), w.params()), dir, finish, TIMEOUT);
                return t.written().description();
            } catch (SnapshotException e) {
                if (attempt == 5 || !e.getMessage().contains("had already ended")) throw e;
            }
        }
    }

    @ParameterizedTest(name = "taken on {0}, restored {2} on {1}, {3} vCPU(s)")
    @CsvSource({"ref, ref, eager, 1", "ref, ref, eager, 2", "kvm, kvm, lazy, 1", "kvm, kvm, lazy, 2", "kvm, kvm, eager, 2",
            "kvm, ref, eager, 1", "kvm, ref, eager, 2", "ref, kvm, lazy, 1", "ref, kvm, lazy, 2", "ref, kvm, eager, 1",
            "ref, ref, lazy, 1", "ref, ref, lazy, 2", "kvm, ref, lazy, 1", "kvm, ref, lazy, 2",
            "kvm, kvm, lazy-exit, 1", "kvm, kvm, lazy-exit, 2", "ref, kvm, lazy-exit, 2"})
    void shouldEndARestoredGuestWithTheRamOfAnUninterruptedRun(String from, String to, String how, int vcpus, @TempDir Path dir) {
        // lazy-exit: lazy, each vCPU serving its own memory-fault exits (on kvm through a user-mode-only userfaultfd)
        String mode = how.startsWith("lazy") ? "lazy" : how;
        Restore.Delivery delivery = how.equals("lazy-exit") ? Restore.Delivery.EXIT : null;
        require(from, "eager");
        require(to, mode);
        Workload w = workload(vcpus, from);
        String expected = uninterrupted(from, w, vcpus);
        SnapshotDescription d = take(from, w, vcpus, dir, true);
        assertEquals(expected, d.originalRun().ramSha256(), "the snapshotted guest, let run on, ends as an uninterrupted one");
        assertTrue(d.guestExits().get(0) == 3, "paused right after exit 3 of vCPU 0");

        Restore.Result r = Restore.run(dir, Restore.Options.of(to, mode.equals("lazy") ? Restore.Mode.LAZY : Restore.Mode.EAGER).withDelivery(delivery));
        assertTrue(r.report().clean(), r.report().vcpus().toString());
        assertEquals(expected, r.report().ramSha256());
        assertTrue(r.ok(), r.comparison().verdict());
        assertEquals("memory verified", r.comparison().workloadVerdict());
        for (var v : r.report().vcpus()) {
            assertEquals(VcpuOutcome.DONE, v.outcome());
            // phases reports 8 phase numbers as 16 dwords; exits 1-3 of vCPU 0 were three of them, before the snapshot
            if (v.index() == 0) assertEquals(16 - 3, v.reports().length, "reports after the snapshot point");
        }
        assertTrue(r.timings().firstEntry() > 0 && r.timings().firstEntry() <= r.timings().ended());
        if (mode.equals("lazy")) {
            assertTrue(r.paging().faults() > 0, "pages were served on demand");
            assertEquals(to.equals("ref") || delivery == Restore.Delivery.EXIT ? Restore.Delivery.EXIT : Restore.Delivery.UFFD, r.delivery());
            if (r.delivery() == Restore.Delivery.EXIT) {
                // exit delivery: every fault the core served was a memory-fault exit of a vCPU, served on its own thread
                long exits = r.report().exitCounts().getOrDefault("memory_fault", 0L);
                assertTrue(exits >= r.paging().faults(), "exits " + exits + ", faults served " + r.paging().faults());
            }
            assertTrue(r.chunksVerified() < SnapshotFormat.chunkCount(MEM) || r.paging().faults() > 0);
        } else {
            assertEquals(SnapshotFormat.chunkCount(MEM), r.chunksVerified(), "eager restore checks every chunk");
        }
    }

    @Test
    void shouldStoreOnlyNonZeroPages(@TempDir Path dir) {
        long ram = 16L << 20;
        MemorySegment mem = MemorySegment.ofArray(new byte[(int) ram]);
        long[] gpas = {0x1000, 0x100000, 0x3ff000, 0x400000, ram - 0x1000};
        for (long g : gpas) mem.set(ValueLayout.JAVA_BYTE, g + 17, (byte) 1);
        var states = SnapshotFormatTest.bootStates(1, ram);
        SnapshotWriter.Written w = SnapshotWriter.write(dir, mem, "ref", states, List.of(0L), SnapshotDescription.Point.afterMillis(0),
                SnapshotDescription.Guest.image("/x", "0".repeat(64), 0x200000, 0x200000));
        assertEquals(gpas.length, w.description().memory().storedPages());
        assertEquals(ram / 4096 - gpas.length, w.description().memory().zeroPages());
        assertEquals(gpas.length * 4096L, dir.resolve(SnapshotFormat.MEMORY_FILE).toFile().length(), "memory.bin holds the non-zero pages only");
        try (Snapshot s = Snapshot.open(dir)) {
            MemorySegment back = MemorySegment.ofArray(new byte[(int) ram]);
            s.readInto(back);
            assertEquals(-1, back.mismatch(mem), "eager read gives back RAM byte for byte");
        }
    }

    // ---- refusals: nothing runs ------------------------------------------------------------------
    //
    // The snapshot is checked on a thread of its own while the backend is opened and the VM built
    // (RAM and memslots, for the RAM size the page map's header names). A refused description is
    // refused before any vCPU exists; the files it points to (page map, chunk table, memory file, and
    // chunk data checked upfront) before any vCPU is started. Either way whatever was built is closed
    // and no vCPU ever ran.

    /** What a restore did with its backend: opened and closed it, created and closed VMs, ran vCPUs. */
    private static final class BackendRecorder {
        final AtomicInteger opened = new AtomicInteger(), closed = new AtomicInteger();
        final AtomicInteger vmsCreated = new AtomicInteger(), vmsClosed = new AtomicInteger(), vcpusCreated = new AtomicInteger();
        final AtomicInteger vcpuRuns = new AtomicInteger();

        Hypervisor open(String name) {
            opened.incrementAndGet();
            return recording(Hypervisor.class, Backends.open(name));
        }

        @SuppressWarnings("unchecked")
        private <T> T recording(Class<T> type, T target) {
            return (T) Proxy.newProxyInstance(type.getClassLoader(), new Class<?>[] {type}, (proxy, method, args) -> {
                String name = method.getName();
                if (name.equals("run") && type == Vcpu.class) vcpuRuns.incrementAndGet();
                if (name.equals("close") && type == Vm.class) vmsClosed.incrementAndGet();
                if (name.equals("close") && type == Hypervisor.class) closed.incrementAndGet();
                Object result;
                try {
                    result = method.invoke(target, args);
                } catch (InvocationTargetException e) {
                    throw e.getCause();
                }
                if (name.equals("createVm")) {
                    vmsCreated.incrementAndGet();
                    return recording(Vm.class, (Vm) result);
                }
                if (name.equals("createVcpu")) {
                    vcpusCreated.incrementAndGet();
                    return recording(Vcpu.class, (Vcpu) result);
                }
                return result;
            });
        }
    }

    private static BackendRecorder recorder = new BackendRecorder();

    private static Restore.Options counting(String mode) {
        return Restore.Options.of("ref", mode.equals("lazy") ? Restore.Mode.LAZY : Restore.Mode.EAGER)
                .withBackends(name -> recorder.open(name));
    }

    /** Refused: whatever was built alongside the checks was closed, and no vCPU ever ran. */
    private static String refused(Path dir, Restore.Options o) {
        recorder = new BackendRecorder();
        SnapshotException e = assertThrows(SnapshotException.class, () -> Restore.run(dir, o));
        assertEquals(0, recorder.vcpuRuns.get(), "no vCPU was run, so no guest instruction ran");
        assertEquals(recorder.vmsCreated.get(), recorder.vmsClosed.get(), "every VM built alongside the checks was closed");
        assertEquals(recorder.opened.get(), recorder.closed.get(), "every backend opened was closed");
        assertFalse(e.getMessage().contains("\n"), "one line: " + e.getMessage());
        return e.getMessage();
    }

    /** Refused from the description alone: not even a vCPU was created (its registers never reached a backend). */
    private static String refusedBeforeAnyVcpu(Path dir, Restore.Options o) {
        String m = refused(dir, o);
        assertEquals(0, recorder.vcpusCreated.get(), "no vCPU was created");
        return m;
    }

    private Path refSnapshot(Path dir) {
        take("ref", workload(1), 1, dir, true);
        return dir;
    }

    @Test
    void shouldRefuseATruncatedMemoryFileNamingItsLength(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        Path mem = dir.resolve(SnapshotFormat.MEMORY_FILE);
        long len = Files.size(mem);
        shorten(mem, 4096);
        String m = refused(dir, counting("eager"));
        assertTrue(m.contains("memory.bin") && m.contains((len - 4096) + " bytes") && m.contains(String.valueOf(len)) && m.contains("truncated"), m);
    }

    @Test
    void shouldRefuseAFlippedByteInAChunkNamingTheChunkAndBothChecksums(@TempDir Path dir) throws Exception {
        take("ref", workload(1), 1, dir, true);
        ChunkTable.Chunk c = chunks(dir).stream().filter(x -> x.pages() > 0 && x.index() > 0).findFirst().orElseThrow();
        flip(dir.resolve(SnapshotFormat.MEMORY_FILE), c.offset() + 100);
        for (Restore.Options o : List.of(counting("eager"), counting("eager").withVerify(Restore.Verify.UPFRONT))) {
            String m = refused(dir, o);
            assertTrue(m.contains("chunk " + c.index() + " ") && m.contains(c.sha256()) && m.contains("corrupted"), m);
        }
    }

    @Test
    void shouldRefuseAnUnknownFormatVersion(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        edit(dir, "\"version\" : 2,", "\"version\" : 3,");
        String m = refusedBeforeAnyVcpu(dir, counting("eager"));
        assertTrue(m.contains("format version 3 is not supported") && m.contains("version 2"), m);
    }

    @Test
    void shouldRefuseADescriptionWhoseRamSizeDisagreesWithItsMemslots(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        edit(dir, "\"ram_bytes\" : " + MEM + ",", "\"ram_bytes\" : " + (MEM * 2) + ",");
        String m = refusedBeforeAnyVcpu(dir, counting("eager"));
        assertTrue(m.contains("memslots"), m);
    }

    @Test
    void shouldRefuseMemslotsThatDoNotMatchHowRestoreInstallsRam(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        edit(dir, "\"gpa\" : \"0x100000\",\n    \"bytes\" : " + (MEM - 0x100000), "\"gpa\" : \"0x200000\",\n    \"bytes\" : " + (MEM - 0x200000));
        String m = refusedBeforeAnyVcpu(dir, counting("eager"));
        assertTrue(m.contains("memslots[1]") && m.contains("slot 1 [0x200000") && m.contains("slot 1 [0x100000"), m);
    }

    @Test
    void shouldRefuseAPageMapWithAFlippedBit(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        flip(dir.resolve(SnapshotFormat.PAGE_MAP_FILE), PageMap.HEADER_BYTES + 40);
        String m = refused(dir, counting("eager"));
        assertTrue(m.contains("pages.map") && m.contains("SHA-256"), m);
    }

    @Test
    void shouldRefuseRegistersThatAreNotA64BitGuest(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        String json = Files.readString(dir.resolve(SnapshotFormat.DESCRIPTION_FILE));
        Files.writeString(dir.resolve(SnapshotFormat.DESCRIPTION_FILE), json.replaceFirst("\"efer\" : \"0x[0-9a-f]+\"", "\"efer\" : \"0x0\""));
        String m = refusedBeforeAnyVcpu(dir, counting("eager"));
        assertTrue(m.contains("vcpus[0].sregs.efer") && m.contains("long mode"), m);
        assertEquals(1, recorder.vmsCreated.get(), "the VM was built ahead (RAM and memslots, no vCPU), then closed");
    }

    @Test
    void shouldRefuseAChunkTableWithAFlippedByteBeforeAnyGuestInstruction(@TempDir Path dir) throws Exception {
        SnapshotDescription d = take("ref", workload(1), 1, dir, true);
        flip(dir.resolve(SnapshotFormat.CHUNK_TABLE_FILE), ChunkTable.HEADER_BYTES + 3 * ChunkTable.ENTRY_BYTES + 20);
        for (String mode : List.of("lazy", "eager")) {
            String m = refused(dir, counting(mode));
            assertTrue(m.contains("chunks.bin has SHA-256") && m.contains(d.chunkTable().sha256()) && m.contains("corrupted"), m);
            assertEquals(1, recorder.vcpusCreated.get(), "the machine was built alongside the file checks, then closed unstarted");
        }
    }

    @Test
    void shouldRefuseATruncatedChunkTableNamingBothLengths(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        Path table = dir.resolve(SnapshotFormat.CHUNK_TABLE_FILE);
        long len = Files.size(table);
        shorten(table, ChunkTable.ENTRY_BYTES);
        String m = refused(dir, counting("lazy"));
        assertTrue(m.contains("chunks.bin has " + (len - ChunkTable.ENTRY_BYTES) + " bytes") && m.contains(String.valueOf(len)) && m.contains("truncated"), m);
    }

    @Test
    void shouldRefuseAMissingChunkTable(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        Files.delete(dir.resolve(SnapshotFormat.CHUNK_TABLE_FILE));
        String m = refused(dir, counting("lazy"));
        assertTrue(m.contains("chunks.bin is missing (the chunk table)"), m);
    }

    /** A table rewritten with its checksum updated still has to agree with itself: offsets are prefix sums. */
    @Test
    void shouldRefuseAChunkTableWhoseOffsetsAreNotThePagesBeforeThem(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        rewriteChunkTable(dir, b -> b.putLong(ChunkTable.HEADER_BYTES + 3 * ChunkTable.ENTRY_BYTES, b.getLong(ChunkTable.HEADER_BYTES + 3 * ChunkTable.ENTRY_BYTES) + 4096));
        String m = refused(dir, counting("lazy"));
        assertTrue(m.contains("chunks.bin: chunk 3 starts at offset") && m.contains("the pages of the chunks before it"), m);
    }

    /** ...and with the page map: one page moved from one chunk to the next keeps the sums but not the map. */
    @Test
    void shouldRefuseAChunkTableThatDisagreesWithThePageMap(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        int c = chunks(dir).stream().filter(x -> x.pages() > 0).findFirst().orElseThrow().index();
        rewriteChunkTable(dir, b -> {
            int e = ChunkTable.HEADER_BYTES + c * ChunkTable.ENTRY_BYTES, next = e + ChunkTable.ENTRY_BYTES;
            b.putInt(e + 8, b.getInt(e + 8) - 1);
            b.putInt(next + 8, b.getInt(next + 8) + 1);
            b.putLong(next, b.getLong(next) - 4096);
        });
        String m = refused(dir, counting("lazy"));
        assertTrue(m.contains("pages.map marks") && m.contains("in chunk " + c + ", chunks.bin says"), m);
    }

    @Test
    void shouldRefuseAVersion1SnapshotAskingForANewOne(@TempDir Path dir) throws Exception {
        refSnapshot(dir);
        edit(dir, "\"version\" : 2,", "\"version\" : 1,");
        String m = refusedBeforeAnyVcpu(dir, counting("lazy"));
        assertTrue(m.contains("format version 1 is not supported") && m.contains("take the snapshot again"), m);
    }

    /** Rewrites chunks.bin through {@code change} and records its new SHA-256 in the description. */
    static void rewriteChunkTable(Path dir, java.util.function.Consumer<ByteBuffer> change) throws Exception {
        Path table = dir.resolve(SnapshotFormat.CHUNK_TABLE_FILE);
        byte[] bytes = Files.readAllBytes(table);
        String before = SnapshotWriter.hex(SnapshotWriter.sha256().digest(bytes));
        change.accept(ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN));
        Files.write(table, bytes);
        edit(dir, before, SnapshotWriter.hex(SnapshotWriter.sha256().digest(bytes)));
    }

    /**
     * Lazy restore on ref (exit on missing): the guest's first touch of a corrupted chunk is a
     * memory-fault exit whose service fails the chunk's check; the vCPU stops with the chunk named,
     * no page of that chunk is ever installed (bits still set, pages MISSING, RAM untouched), and
     * {@link Restore#run} reports it.
     */
    @Test
    void shouldNeverInstallAPageOfAChunkThatFailsItsChecksumOnRef(@TempDir Path dir) throws Exception {
        Workload w = workload(1);
        SnapshotDescription d = take("ref", w, 1, dir, true);
        int bad = (int) (w.layout().sliceStart(0) / SnapshotFormat.CHUNK_BYTES);
        ChunkTable.Chunk c = chunks(dir).get(bad);
        assertTrue(c.pages() > 0, "the working set's chunk holds stamped pages");
        flip(dir.resolve(SnapshotFormat.MEMORY_FILE), c.offset() + 8);
        try (Snapshot snap = Snapshot.open(dir); Hypervisor hv = Backends.open("ref")) {
            long base = BootProtocol.IMAGE_MIN_GPA;
            ExitPager pager = new ExitPager(new FaultCore(new SnapshotSource(snap), base, MEM - base, 1, Prefetch.NONE, false));
            MachineSpec spec = MachineSpec.resuming(MEM, d.vcpus()).withTimeout(TIMEOUT).withMainSlot(0, pager.faultHandler())
                    .withMemoryPreparer(pager);
            try (Machine m = new Machine(hv, spec)) {
                snap.readChunksInto(m.ram().segment(), 0, 1);
                RunReport r = m.run();
                assertFalse(r.clean());
                String why = pager.failureMessage();
                assertNotNull(why);
                assertTrue(why.contains("chunk " + bad + " ") && why.contains("corrupted"), why);
                String detail = r.vcpus().get(0).detail();
                assertTrue(detail.contains("memory fault at gpa 0x" + Long.toHexString(bad)) && detail.contains(why), detail);
                FaultCore core = pager.core();
                long first = core.pageOf((long) bad * SnapshotFormat.CHUNK_BYTES);
                for (long p = first; p < first + SnapshotFormat.PAGES_PER_CHUNK; p++) {
                    long gpa = core.gpaOf(p);
                    if (snap.pageMap().isStored(gpa / 4096)) {
                        assertEquals(PageStates.MISSING, core.states().get(p), "stored page 0x" + Long.toHexString(gpa) + " of the bad chunk");
                        assertTrue(pager.bitmap().isMissing(gpa), "the guest can never read page 0x" + Long.toHexString(gpa));
                    }
                }
                assertFalse(snap.isVerified(bad));
                assertEquals(-1, m.ram().segment().asSlice((long) bad * SnapshotFormat.CHUNK_BYTES, SnapshotFormat.CHUNK_BYTES)
                        .mismatch(MemorySegment.ofArray(new byte[SnapshotFormat.CHUNK_BYTES])), "nothing of the bad chunk reached RAM");
            }
        }
        Restore.Result r = Restore.run(dir, Restore.Options.of("ref", Restore.Mode.LAZY));
        assertFalse(r.ok());
        assertTrue(r.failure() != null && r.failure().contains("chunk " + bad + " "), r.failure());
        assertTrue(r.comparison().verdict().contains("chunk " + bad + " "), r.comparison().verdict());
    }

    /**
     * Lazy restore checking chunks on first touch: the guest's first touch of a corrupted chunk stops
     * the machine with the chunk named, and no page of that chunk is ever installed.
     */
    @Test
    void shouldNeverInstallAPageOfAChunkThatFailsItsChecksum(@TempDir Path dir) throws Exception {
        requireKvm();
        requireUserfaultfd();
        Workload w = workload(1, "kvm");
        SnapshotDescription d = take("kvm", w, 1, dir, true);
        int bad = (int) (w.layout().sliceStart(0) / SnapshotFormat.CHUNK_BYTES); // the working set starts here
        ChunkTable.Chunk c = chunks(dir).get(bad);
        assertTrue(c.pages() > 0, "the working set's chunk holds stamped pages");
        flip(dir.resolve(SnapshotFormat.MEMORY_FILE), c.offset() + 8);
        try (Snapshot snap = Snapshot.open(dir); Hypervisor hv = Backends.open("kvm")) {
            long base = BootProtocol.IMAGE_MIN_GPA;
            FaultCore core = new FaultCore(new SnapshotSource(snap), base, MEM - base, 1, Prefetch.NONE, false);
            UffdPager pager = new UffdPager(core, new UffdPager.Config(UffdPager.Mode.MISSING, 1, 0, false, List.of(), UffdPager.Pinning.NONE));
            try (Machine m = new Machine(hv, MachineSpec.resuming(MEM, d.vcpus()).withTimeout(TIMEOUT).withMemoryPreparer(pager))) {
                snap.readChunksInto(m.ram().segment(), 0, 1);
                RunReport r = m.run();
                assertFalse(r.clean());
                assertNotNull(pager.failure());
                assertTrue(pager.failure().getMessage().contains("chunk " + bad + " ") && pager.failure().getMessage().contains("corrupted"),
                        pager.failure().getMessage());
                // released from its userfaultfd wait onto revoked memory: a memory fault, not a guest instruction
                assertTrue(r.vcpus().get(0).detail().contains("memory fault at gpa 0x" + Long.toHexString(bad) ), r.vcpus().get(0).detail());
                PageStates st = core.states();
                long first = core.pageOf((long) bad * SnapshotFormat.CHUNK_BYTES);
                for (long p = first; p < first + SnapshotFormat.PAGES_PER_CHUNK; p++) {
                    if (snap.pageMap().isStored((p * 4096 + base) / 4096)) {
                        assertEquals(PageStates.MISSING, st.get(p), "stored page 0x" + Long.toHexString(core.gpaOf(p)) + " of the bad chunk");
                    }
                }
                assertFalse(snap.isVerified(bad));
                // uffd is unregistered now: pages never installed read as zeros
                MemorySegment ram = m.ram().segment();
                assertEquals(-1, ram.asSlice((long) bad * SnapshotFormat.CHUNK_BYTES, SnapshotFormat.CHUNK_BYTES)
                        .mismatch(MemorySegment.ofArray(new byte[SnapshotFormat.CHUNK_BYTES])), "nothing of the bad chunk reached RAM");
            }
        }
    }

    /**
     * The same under exit delivery on kvm: the vCPU whose fault needs the corrupted chunk stops with
     * the chunk named (its own thread served the fault), and no page of that chunk reaches RAM.
     */
    @Test
    void shouldStopTheVcpuThatNeedsAChunkFailingItsChecksumUnderExitDelivery(@TempDir Path dir) throws Exception {
        requireKvm();
        requireUserfaultfd();
        Workload w = workload(1, "kvm");
        take("kvm", w, 1, dir, true);
        int bad = (int) (w.layout().sliceStart(0) / SnapshotFormat.CHUNK_BYTES);
        flip(dir.resolve(SnapshotFormat.MEMORY_FILE), chunks(dir).get(bad).offset() + 8);
        Restore.Result r = Restore.run(dir, Restore.Options.of("kvm", Restore.Mode.LAZY).withPrefetch(Prefetch.NONE).withDelivery(Restore.Delivery.EXIT));
        assertFalse(r.ok());
        assertNotNull(r.failure());
        assertTrue(r.failure().contains("chunk " + bad + " ") && r.failure().contains("corrupted"), r.failure());
        VcpuResult v = r.report().vcpus().get(0);
        assertEquals(VcpuOutcome.UNRESOLVED_MEMORY_FAULT, v.outcome(), v.toString());
        assertTrue(v.detail().contains("chunk " + bad + " "), "the vCPU's own stop reason names the chunk: " + v.detail());
    }

    /** The chunk table of an intact snapshot in {@code dir}. */
    static List<ChunkTable.Chunk> chunks(Path dir) {
        try (Snapshot s = Snapshot.open(dir)) {
            List<ChunkTable.Chunk> out = new java.util.ArrayList<>();
            for (int i = 0; i < s.chunkTable().count(); i++) out.add(s.chunkTable().chunk(i));
            return out;
        }
    }

    /** Cuts the last {@code bytes} bytes off {@code file} (a truncated write). */
    static void shorten(Path file, long bytes) throws Exception {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(f.length() - bytes);
        }
    }

    static void flip(Path file, long offset) throws Exception {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(offset);
            int b = f.read();
            f.seek(offset);
            f.write(b ^ 0x01);
        }
    }

    static void edit(Path dir, String from, String to) throws Exception {
        Path p = dir.resolve(SnapshotFormat.DESCRIPTION_FILE);
        String json = Files.readString(p);
        assertTrue(json.contains(from), "the description holds " + from);
        Files.writeString(p, json.replace(from, to));
    }
}
