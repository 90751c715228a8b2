package dev.faultline.snapshot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.guest.BootSetup;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import dev.faultline.vmm.VcpuState;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The description round-trips every register field; the snapshot source reads any page run byte-exactly. */
class SnapshotFormatTest {

    static List<VcpuState> bootStates(int vcpus, long ram) {
        List<VcpuState> out = new ArrayList<>();
        Segment blank = new Segment(0, 0xffff, 0, 3, true, 0, false, true, false, false, false, false);
        Sregs base = new Sregs(blank, blank, blank, blank, blank, blank, blank, blank,
                new dev.faultline.hv.DescriptorTable(0, 0), new dev.faultline.hv.DescriptorTable(0, 0), 0, 0, 0, 0, 0, 0, 0xfee00900L);
        for (int i = 0; i < vcpus; i++) out.add(new VcpuState(BootSetup.regs(0x200000, i, vcpus), BootSetup.sregs(base)));
        return out;
    }

    @Test
    void shouldRoundTripEveryRegisterAndSegmentFieldThroughTheDescription() {
        List<VcpuState> st = bootStates(2, 16L << 20);
        var r = st.get(1).regs();
        r.gpr[15] = 0xfedcba9876543210L; // past 2^63: kept exactly as hex
        r.rflags = 0x246;
        Sregs s = st.get(1).sregs();
        Sregs s2 = new Sregs(s.cs(), s.ds(), s.es(), new Segment(0x7fff_0000_1000L, 0xfffff, 0x2b, 3, true, 3, true, true, false, true, true, false),
                s.gs(), s.ss(), s.tr(), s.ldt(), s.gdt(), s.idt(), s.cr0(), 0xdead000L, s.cr3(), s.cr4(), 0x0f, s.efer(), s.apicBase());
        st.set(1, new VcpuState(r, s2));
        SnapshotDescription d = new SnapshotDescription(SnapshotFormat.VERSION, "kvm", "now", 16L << 20, SnapshotWriter.memslots(16L << 20),
                SnapshotDescription.Point.atExit(1, 7), SnapshotDescription.Guest.workload("hot", WorkloadParams.of(16L << 20, 2)),
                st, List.of(5L, 9L), new SnapshotDescription.MemoryFile("memory.bin", 0, 0, 4096, "0".repeat(64)),
                new SnapshotDescription.IndexFile("pages.map", PageMap.fileBytes(16L << 20), "1".repeat(64)),
                new SnapshotDescription.IndexFile("chunks.bin", ChunkTable.fileBytes(16L << 20), "3".repeat(64)), new SnapshotDescription.OriginalRun("2".repeat(64),
                        List.of(new SnapshotDescription.VcpuEnd(0, "done", 0, List.of(-1L, 3L)), new SnapshotDescription.VcpuEnd(1, "done", 0, List.of()))));
        SnapshotDescription back = DescriptionJson.parse("x.json", DescriptionJson.toBytes(d));
        assertEquals(d.vcpus().get(1).regs(), back.vcpus().get(1).regs());
        assertEquals(d.vcpus().get(1).sregs(), back.vcpus().get(1).sregs());
        assertEquals(d.vcpus().get(0).sregs(), back.vcpus().get(0).sregs());
        assertEquals(d.point(), back.point());
        assertEquals(d.guest(), back.guest());
        assertEquals(d.guestExits(), back.guestExits());
        assertEquals(d.originalRun(), back.originalRun());
        assertEquals(d.memslots(), back.memslots());
        assertEquals(d.pageMap(), back.pageMap());
        assertEquals(d.chunkTable(), back.chunkTable());
    }

    @Test
    void shouldRoundTripTheChunkTableThroughItsFileForm() {
        long ram = 3L * SnapshotFormat.CHUNK_BYTES + 5 * SnapshotFormat.PAGE; // a short last chunk
        ChunkTable.Builder b = new ChunkTable.Builder(ram);
        int[] pages = {3, 0, 256, 5};
        for (int i = 0; i < pages.length; i++) {
            byte[] sha = new byte[32];
            sha[0] = (byte) i;
            sha[31] = (byte) (0xa0 + i);
            b.add(pages[i], sha);
        }
        ChunkTable back = ChunkTable.read("t", b.build().toBytes(), ram);
        assertEquals(4, back.count());
        assertEquals(264, back.storedPages());
        assertEquals(new ChunkTable.Chunk(2, 2L << 20, 256, 3 * 4096L, "02" + "00".repeat(30) + "a2"), back.chunk(2));
        assertEquals(259 * 4096L, back.offset(3));
        byte[] sha3 = new byte[32];
        sha3[0] = 3;
        sha3[31] = (byte) 0xa3;
        assertTrue(back.shaMatches(3, sha3));
        assertFalse(back.shaMatches(2, sha3));
    }

    @Test
    void shouldRefuseAChunkTableForOtherRamOrWithAChunkOverfull() {
        long ram = 2L * SnapshotFormat.CHUNK_BYTES;
        ChunkTable.Builder b = new ChunkTable.Builder(ram);
        b.add(1, new byte[32]);
        b.add(2, new byte[32]);
        byte[] file = b.build().toBytes();
        SnapshotException other = org.junit.jupiter.api.Assertions.assertThrows(SnapshotException.class, () -> ChunkTable.read("t.bin", file, ram * 2));
        assertTrue(other.getMessage().contains("t.bin describes " + ram + " bytes of RAM"), other.getMessage());
        java.nio.ByteBuffer.wrap(file).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(ChunkTable.HEADER_BYTES + 8, 257);
        SnapshotException full = org.junit.jupiter.api.Assertions.assertThrows(SnapshotException.class, () -> ChunkTable.read("t.bin", file, ram));
        assertTrue(full.getMessage().contains("t.bin: chunk 0 stores 257 pages, the chunk has 256"), full.getMessage());
    }

    @Test
    void shouldServeAnyRunOfPagesByteExactlyAndZeroPagesWithoutReading(@TempDir Path dir) {
        long ram = 8L << 20;
        MemorySegment mem = Arena.ofAuto().allocate(ram, 4096);
        java.util.Random rnd = new java.util.Random(7);
        for (long p = 0; p < ram / 4096; p++) {
            if (rnd.nextInt(3) == 0) for (int k = 0; k < 4; k++) mem.set(ValueLayout.JAVA_LONG, p * 4096 + rnd.nextInt(512) * 8, rnd.nextLong() | 1);
        }
        SnapshotWriter.write(dir, mem, "ref", bootStates(1, ram), List.of(0L), SnapshotDescription.Point.afterMillis(1),
                SnapshotDescription.Guest.image("/x", "0".repeat(64), 0x200000, 0x200000));
        try (Snapshot s = Snapshot.open(dir)) {
            SnapshotSource src = new SnapshotSource(s);
            MemorySegment dst = Arena.ofAuto().allocate(2L << 20, 4096);
            for (int i = 0; i < 300; i++) {
                long page = rnd.nextLong(ram / 4096);
                int n = 1 + rnd.nextInt((int) Math.min(512, ram / 4096 - page));
                src.fill(page * 4096, dst, 0, n * 4096L);
                assertEquals(-1, dst.asSlice(0, n * 4096L).mismatch(mem.asSlice(page * 4096, n * 4096L)),
                        "run of " + n + " pages at 0x" + Long.toHexString(page * 4096));
                boolean anyStored = false;
                for (long p = page; p < page + n; p++) anyStored |= s.pageMap().isStored(p);
                assertEquals(!anyStored, src.isZero(page * 4096, n * 4096L));
            }
            assertTrue(s.chunksVerified() > 0);
            assertFalse(s.pageMap().storedPages() == 0);
        }
    }

    @Test
    void shouldReadJsonIntoTheSameTreeAsAnObjectMapper() throws Exception {
        var mapper = new com.fasterxml.jackson.databind.ObjectMapper();
        String[] docs = {
                "{\"a\":1,\"b\":[true,false,null,\"x\\u00e9\"],\"c\":{\"d\":-2147483649,\"e\":18446744073709551616,\"f\":1.5e3}}",
                "[1,[2,[3,{}]],[]]", "\"text\"", "42", "{\"k\":1,\"k\":2}", " { } ",
                new String(DescriptionJson.toBytes(descriptionForJson()), java.nio.charset.StandardCharsets.UTF_8)};
        for (String doc : docs) {
            byte[] b = doc.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            var ours = DescriptionJson.readTree(b);
            var theirs = mapper.readTree(b);
            assertEquals(theirs, ours, doc);
            assertEquals(theirs.getClass(), ours.getClass(), doc);
            if (theirs.isObject()) theirs.properties().forEach(e -> assertEquals(e.getValue().getClass(), ours.get(e.getKey()).getClass(), e.getKey()));
        }
        assertEquals(null, DescriptionJson.readTree(new byte[0]));
        for (String bad : new String[] {"{\"a\":1} {", "{\"a\":", "[1,2", "{\"a\" 1}", "nul"}) {
            org.junit.jupiter.api.Assertions.assertThrows(java.io.IOException.class,
                    () -> DescriptionJson.readTree(bad.getBytes(java.nio.charset.StandardCharsets.UTF_8)), bad);
        }
    }

    private static SnapshotDescription descriptionForJson() {
        List<VcpuState> st = bootStates(1, 16L << 20);
        return new SnapshotDescription(SnapshotFormat.VERSION, "kvm", "now", 16L << 20, SnapshotWriter.memslots(16L << 20),
                SnapshotDescription.Point.afterMillis(3), SnapshotDescription.Guest.workload("hot", WorkloadParams.of(16L << 20, 1)),
                st, List.of(5L), new SnapshotDescription.MemoryFile("memory.bin", 0, 0, 4096, "0".repeat(64)),
                new SnapshotDescription.IndexFile("pages.map", PageMap.fileBytes(16L << 20), "1".repeat(64)),
                new SnapshotDescription.IndexFile("chunks.bin", ChunkTable.fileBytes(16L << 20), "3".repeat(64)), null);
    }
}
