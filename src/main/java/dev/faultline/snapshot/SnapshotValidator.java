package dev.faultline.snapshot;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.DescriptorTable;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import java.util.List;
import java.util.regex.Pattern;

/**
 * Checks the values of a parsed description against each other and against what a restore can
 * build: sizes, memslot layout, the chunk table, and that every vCPU's registers describe a
 * 64-bit guest at CPL 0 with its tables inside RAM (the boot protocol's state; the snapshot of
 * any other state would be refused rather than run). Files are checked by {@link Snapshot#open}.
 */
final class SnapshotValidator {
    private SnapshotValidator() {}

    private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
    /** RFLAGS bits that must be zero: bits 3, 5, 15 and 22-63. */
    private static final long RFLAGS_RESERVED = ~0x3fffffL | (1L << 3) | (1L << 5) | (1L << 15);

    static void check(String file, SnapshotDescription d) {
        String f = file + ": ";
        if (!d.backend().equals("kvm") && !d.backend().equals("ref")) {
            throw new SnapshotException(f + "backend is '" + d.backend() + "', expected kvm or ref");
        }
        long ram = d.ramBytes();
        if (ram < BootProtocol.IMAGE_MIN_GPA + SnapshotFormat.PAGE || ram > BootProtocol.MAX_RAM || ram % SnapshotFormat.PAGE != 0) {
            throw new SnapshotException(f + "ram_bytes " + ram + " is not a RAM size a machine can have (a multiple of 4 KiB from 1 MiB + 4 KiB to "
                    + (BootProtocol.MAX_RAM >> 30) + " GiB)");
        }
        checkMemslots(f, d.memslots(), ram);
        int n = d.vcpus().size();
        if (n < 1 || n > BootProtocol.MAX_VCPUS) throw new SnapshotException(f + "vcpus lists " + n + " vCPUs, expected 1.." + BootProtocol.MAX_VCPUS);
        for (int i = 0; i < n; i++) {
            checkRegs(f + "vcpus[" + i + "].", d.vcpus().get(i).regs());
            checkSregs(f + "vcpus[" + i + "].sregs.", d.vcpus().get(i).sregs(), ram);
        }
        SnapshotDescription.Point p = d.point();
        if (p.kind().equals("exit") && (p.vcpu() < 0 || p.vcpu() >= n || p.exit() < 1)) {
            throw new SnapshotException(f + "point names exit " + p.exit() + " of vCPU " + p.vcpu() + ", which a guest of " + n + " vCPUs cannot have");
        }
        checkGuest(f, d.guest(), ram, n);
        checkMemory(f, d, ram);
        if (d.originalRun() != null) {
            if (!SHA256.matcher(d.originalRun().ramSha256()).matches()) throw new SnapshotException(f + "original_run.ram_sha256 is not a SHA-256");
            if (d.originalRun().vcpus().size() != n) {
                throw new SnapshotException(f + "original_run lists " + d.originalRun().vcpus().size() + " vCPUs, the snapshot has " + n);
            }
        }
    }

    private static void checkMemslots(String f, List<SnapshotDescription.Memslot> got, long ram) {
        List<SnapshotDescription.Memslot> want = SnapshotWriter.memslots(ram);
        if (got.size() != want.size()) {
            throw new SnapshotException(f + "memslots lists " + got.size() + " slots; RAM of " + ram + " bytes is installed as " + want.size()
                    + " (" + describe(want) + ")");
        }
        for (int i = 0; i < want.size(); i++) {
            if (!got.get(i).equals(want.get(i))) {
                throw new SnapshotException(f + "memslots[" + i + "] is " + describe(List.of(got.get(i))) + ", but RAM of " + ram
                        + " bytes is installed as " + describe(List.of(want.get(i))));
            }
        }
    }

    private static String describe(List<SnapshotDescription.Memslot> slots) {
        StringBuilder sb = new StringBuilder();
        for (SnapshotDescription.Memslot s : slots) {
            if (!sb.isEmpty()) sb.append(", ");
            sb.append(String.format("slot %d [0x%x, 0x%x) flags 0x%x", s.slot(), s.gpa(), s.gpa() + s.bytes(), s.flags()));
        }
        return sb.toString();
    }

    private static void checkRegs(String at, Regs r) {
        if (!canonical(r.rip)) throw new SnapshotException(at + "regs.rip 0x" + Long.toHexString(r.rip) + " is not a canonical address");
        if ((r.rflags & Regs.RFLAGS_FIXED) == 0 || (r.rflags & RFLAGS_RESERVED) != 0) {
            throw new SnapshotException(at + "regs.rflags 0x" + Long.toHexString(r.rflags) + " has reserved bits wrong (bit 1 must be set; 3, 5, 15, 22-63 clear)");
        }
    }

    private static void checkSregs(String at, Sregs s, long ram) {
        if ((s.cr0() & (Sregs.CR0_PE | Sregs.CR0_PG)) != (Sregs.CR0_PE | Sregs.CR0_PG)) {
            throw new SnapshotException(at + "cr0 0x" + Long.toHexString(s.cr0()) + " lacks PE or PG: not a paged 64-bit guest");
        }
        if ((s.cr4() & Sregs.CR4_PAE) == 0) throw new SnapshotException(at + "cr4 0x" + Long.toHexString(s.cr4()) + " lacks PAE: not a 64-bit guest");
        if ((s.efer() & (Sregs.EFER_LME | Sregs.EFER_LMA)) != (Sregs.EFER_LME | Sregs.EFER_LMA)) {
            throw new SnapshotException(at + "efer 0x" + Long.toHexString(s.efer()) + " lacks LME or LMA: not in long mode");
        }
        Segment cs = s.cs();
        if (!cs.present() || !cs.l() || cs.db() || cs.unusable()) {
            throw new SnapshotException(at + "cs is not a present 64-bit code segment (present=" + cs.present() + " l=" + cs.l() + " db=" + cs.db() + ")");
        }
        if ((s.cr3() & 0xfff) != 0 || s.cr3() >= ram) {
            throw new SnapshotException(at + "cr3 0x" + Long.toHexString(s.cr3()) + " is not a page-aligned address inside guest RAM (" + ram + " bytes)");
        }
        table(at + "gdt", s.gdt(), ram);
        table(at + "idt", s.idt(), ram);
    }

    private static void table(String at, DescriptorTable t, long ram) {
        if (t.limit() == 0 && t.base() == 0) return;
        if (t.base() < 0 || t.base() + t.limit() >= ram) {
            throw new SnapshotException(at + " [0x" + Long.toHexString(t.base()) + ", +0x" + Long.toHexString(t.limit()) + "] lies outside guest RAM (" + ram + " bytes)");
        }
    }

    private static boolean canonical(long a) {
        return (a << 16 >> 16) == a;
    }

    private static void checkGuest(String f, SnapshotDescription.Guest g, long ram, int vcpus) {
        if (g.isWorkload()) {
            if (!Workloads.names().contains(g.workload())) throw new SnapshotException(f + "guest.workload '" + g.workload() + "' is not a workload this build knows");
            if (g.params().memSize() != ram || g.params().vcpus() != vcpus) {
                throw new SnapshotException(f + "guest.params are for " + g.params().memSize() + " bytes and " + g.params().vcpus()
                        + " vCPUs, the snapshot has " + ram + " bytes and " + vcpus);
            }
        } else if (!SHA256.matcher(g.imageSha256()).matches()) {
            throw new SnapshotException(f + "guest.image_sha256 is not a SHA-256");
        }
    }

    private static void checkMemory(String f, SnapshotDescription d, long ram) {
        SnapshotDescription.MemoryFile m = d.memory();
        if (!m.file().equals(SnapshotFormat.MEMORY_FILE)) throw new SnapshotException(f + "memory.file is '" + m.file() + "', expected " + SnapshotFormat.MEMORY_FILE);
        if (!d.pageMap().file().equals(SnapshotFormat.PAGE_MAP_FILE)) {
            throw new SnapshotException(f + "page_map.file is '" + d.pageMap().file() + "', expected " + SnapshotFormat.PAGE_MAP_FILE);
        }
        long pages = ram / SnapshotFormat.PAGE;
        if (m.storedPages() < 0 || m.zeroPages() < 0 || m.storedPages() + m.zeroPages() != pages) {
            throw new SnapshotException(f + "memory lists " + m.storedPages() + " stored and " + m.zeroPages() + " zero pages, RAM has " + pages);
        }
        if (m.bytes() != m.storedPages() * SnapshotFormat.PAGE) {
            throw new SnapshotException(f + "memory.bytes is " + m.bytes() + ", expected " + m.storedPages() + " stored pages x 4096");
        }
        if (!SHA256.matcher(m.ramSha256()).matches()) throw new SnapshotException(f + "memory.ram_sha256 is not a SHA-256");
        if (d.pageMap().bytes() != PageMap.fileBytes(ram)) {
            throw new SnapshotException(f + "page_map.bytes is " + d.pageMap().bytes() + ", expected " + PageMap.fileBytes(ram) + " for " + ram + " bytes of RAM");
        }
        if (!SHA256.matcher(d.pageMap().sha256()).matches()) throw new SnapshotException(f + "page_map.sha256 is not a SHA-256");
        SnapshotDescription.IndexFile t = d.chunkTable();
        if (!t.file().equals(SnapshotFormat.CHUNK_TABLE_FILE)) {
            throw new SnapshotException(f + "chunk_table.file is '" + t.file() + "', expected " + SnapshotFormat.CHUNK_TABLE_FILE);
        }
        if (t.bytes() != ChunkTable.fileBytes(ram)) {
            throw new SnapshotException(f + "chunk_table.bytes is " + t.bytes() + ", expected " + ChunkTable.fileBytes(ram) + " for "
                    + SnapshotFormat.chunkCount(ram) + " chunks");
        }
        if (!SHA256.matcher(t.sha256()).matches()) throw new SnapshotException(f + "chunk_table.sha256 is not a SHA-256");
    }
}
