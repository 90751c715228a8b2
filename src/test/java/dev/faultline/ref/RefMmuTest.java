package dev.faultline.ref;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.guest.BootProtocol;
import dev.faultline.hv.ExitReason;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.hv.VcpuExit;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The MMU: 4-level walks with 4 KiB/1 GiB pages, permissions, Accessed/Dirty, TLB coherence, self-modifying code. */
class RefMmuTest {
    static final long P = 1, RW = 2, A = 1 << 5, D = 1 << 6, PS = 1 << 7, NX = 1L << 63;
    static final long PDPT2 = 0x40000, PD2 = 0x41000, PT = 0x42000, PDPT3 = 0x43000;
    static final long VA = 0x8000000000L, VA_1G = 0x10000000000L;

    /** Maps VA+0 → 0x300000 (rw), VA+0x1000 → 0x301000 (read-only), VA+0x2000 → 0x302000 (NX); no A/D preset. */
    static void mapTestPages(GuestMachine m) {
        put(m, BootProtocol.PML4_GPA + 8, PDPT2 | P | RW);
        put(m, PDPT2, PD2 | P | RW);
        put(m, PD2, PT | P | RW);
        put(m, PT, 0x300000 | P | RW);
        put(m, PT + 8, 0x301000 | P);
        put(m, PT + 16, 0x302000 | P | RW | NX);
        put(m, BootProtocol.PML4_GPA + 16, PDPT3 | P | RW | A);
        put(m, PDPT3, P | RW | PS | A | D);  // 1 GiB page at gpa 0
    }

    static void put(GuestMachine m, long gpa, long v) { m.mem.set(ValueLayout.JAVA_LONG_UNALIGNED, gpa, v); }

    static long get(GuestMachine m, long gpa) { return m.read64(gpa); }

    @Test
    void shouldSetAccessedOnEveryLevelForAReadAndDirtyOnlyOnTheLeafForAWrite() {
        byte[] img = Toolchain.assemble("""
                movabs $0x8000000000, %rbx
                mov (%rbx), %rax
                out %eax, $0xf0
                movq $0x77, 8(%rbx)
                out %eax, $0xf0
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            mapTestPages(m);
            put(m, 0x300000, 0x5151);
            VcpuExit.Io io = (VcpuExit.Io) m.vcpu().run();
            assertEquals(0x5151, io.value());
            for (long e : new long[]{get(m, BootProtocol.PML4_GPA + 8), get(m, PDPT2), get(m, PD2), get(m, PT)}) {
                assertEquals(A, e & A, "accessed on every level");
                assertEquals(0, e & D, "no dirty bit after a read");
            }
            m.vcpu().run();
            assertEquals(D, get(m, PT) & D, "dirty on the leaf after a write");
            assertEquals(0, get(m, PD2) & D, "never dirty on a non-leaf entry");
            assertEquals(0x77, get(m, 0x300008));
            assertEquals(0, get(m, PT + 8) & A, "an unused entry stays untouched");
        }
    }

    @Test
    void shouldFaultOnAWriteToAReadOnlyPageWithWriteProtectOn() {
        byte[] img = Toolchain.assemble("movabs $0x8000001000, %rbx\nmov (%rbx), %rax\nmovq $1, (%rbx)\nhlt\n");
        try (GuestMachine m = new GuestMachine(img)) {
            mapTestPages(m);
            assertEquals(ExitReason.SHUTDOWN, m.vcpu().run().reason());
            assertEquals(14, m.vcpu().lastExceptionVector());
            assertEquals(VA + 0x1000, m.vcpu().getSregs().cr2());
            assertEquals(0, get(m, 0x301000), "nothing was written");
        }
    }

    @Test
    void shouldFaultOnExecutingANoExecutePage() {
        byte[] img = Toolchain.assemble("movabs $0x8000002000, %rcx\njmp *%rcx\n");
        try (GuestMachine m = new GuestMachine(img)) {
            mapTestPages(m);
            m.mem.set(ValueLayout.JAVA_BYTE, 0x302000, (byte) 0xf4);
            assertEquals(ExitReason.SHUTDOWN, m.vcpu().run().reason());
            assertEquals(14, m.vcpu().lastExceptionVector());
            assertEquals(VA + 0x2000, m.regs().rip);
        }
    }

    @Test
    void shouldTranslateThroughAOneGibPage() {
        byte[] img = Toolchain.assemble("movabs $0x10000300010, %rbx\nmov (%rbx), %rax\nhlt\n");
        try (GuestMachine m = new GuestMachine(img)) {
            mapTestPages(m);
            put(m, 0x300010, 0x1616161616L);
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            assertEquals(0x1616161616L, m.regs().rax());
        }
    }

    @Test
    void shouldSeeAChangedPteAfterInvlpgAndAfterACr3Reload() {
        byte[] img = Toolchain.assemble("""
                movabs $0x8000000000, %rbx
                mov (%rbx), %rax
                out %eax, $0xf0
                movq $0x303063, 0x42000      # PT[0] -> 0x303000, P|RW|A|D
                invlpg (%rbx)
                mov (%rbx), %rax
                out %eax, $0xf0
                movq $0x300063, 0x42000      # back to 0x300000
                mov %cr3, %rcx
                mov %rcx, %cr3
                mov (%rbx), %rax
                out %eax, $0xf0
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            mapTestPages(m);
            put(m, 0x300000, 0xaaaa);
            put(m, 0x303000, 0xbbbb);
            GuestMachine.Result r = m.runUntilDone(0, 10);
            assertEquals(List.of(0xaaaaL, 0xbbbbL, 0xaaaaL), r.reports);
        }
    }

    @Test
    void shouldExecuteCodeThatTheGuestJustRewroteInTheSamePage() {
        byte[] img = Toolchain.assemble("""
                xor %r8d, %r8d
                mov $1, %ecx
                lea patch(%rip), %rdi
                1: mov %cl, 1(%rdi)          # rewrite the immediate of the next mov
                patch:
                mov $0, %eax
                add %rax, %r8
                inc %ecx
                cmp $11, %ecx
                jne 1b
                mov %r8, %rax
                out %eax, $0xf4
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            GuestMachine.Result r = m.runUntilDone();
            assertEquals(55, r.doneCode, "1+2+...+10: every patched immediate was executed");
        }
    }

    @Test
    void shouldLogWritesInTheDirtyBitmapAndClearItOnHarvest() {
        byte[] img = Toolchain.assemble("""
                movq $1, 0x400000
                movq $2, 0x402008
                out %eax, $0xf0
                movq $3, 0x402010
                movq $4, 0x405000
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            MemorySlot main = m.vm.memorySlots().get(1);
            m.vm.setMemorySlot(new MemorySlot(main.slot(), MemslotFlags.LOG_DIRTY_PAGES, main.gpa(), main.size(), main.memory(),
                    main.memoryOffset(), null, 0));
            MemorySegment bitmap = MemorySegment.ofArray(new long[(int) (main.size() >>> 12 >>> 6) + 1]);
            m.vm.getDirtyLog(1, bitmap);  // start clean
            m.vcpu().run();
            m.vm.getDirtyLog(1, bitmap);
            assertEquals(dirtyPages(0x400000, 0x402000), dirtyList(bitmap, main.gpa()));
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            m.vm.getDirtyLog(1, bitmap);
            assertEquals(dirtyPages(0x402000, 0x405000), dirtyList(bitmap, main.gpa()), "pages are logged again after a harvest");
        }
    }

    static List<Long> dirtyPages(long... gpas) {
        List<Long> l = new ArrayList<>();
        for (long g : gpas) l.add(g);
        return l;
    }

    static List<Long> dirtyList(MemorySegment bitmap, long base) {
        List<Long> l = new ArrayList<>();
        for (long i = 0; i < bitmap.byteSize() * 8; i++) {
            long w = bitmap.get(ValueLayout.JAVA_LONG_UNALIGNED, (i >>> 6) * 8);
            if ((w >>> (i & 63) & 1) != 0) l.add(base + (i << 12));
        }
        return l;
    }

    @Test
    void shouldKeepLockedInstructionsAtomicAcrossVcpusOnTheirOwnThreads() throws Exception {
        byte[] img = Toolchain.assemble("""
                mov $100000, %ecx
                1: lock incq 0x300000
                mov $1, %eax
                lock xadd %rax, 0x300008
                2: xor %eax, %eax
                mov $1, %edx
                lock cmpxchg %rdx, 0x300010
                jnz 2b
                mov 0x300018, %rax
                inc %rax
                mov %rax, 0x300018
                movq $0, 0x300010
                dec %ecx
                jnz 1b
                xor %eax, %eax
                out %eax, $0xf4
                hlt
                """);
        int n = 3;
        try (GuestMachine m = new GuestMachine(16L << 20, img, n)) {
            List<Thread> threads = new ArrayList<>();
            List<GuestMachine.Result> results = java.util.Collections.synchronizedList(new ArrayList<>());
            for (int i = 0; i < n; i++) {
                int idx = i;
                Thread t = new Thread(() -> results.add(m.runUntilDone(idx, 1000)), "vcpu-" + i);
                threads.add(t);
                t.start();
            }
            for (Thread t : threads) t.join(60_000);
            assertEquals(n, results.size());
            for (GuestMachine.Result r : results) assertEquals(0, r.doneCode, r::toString);
            assertEquals(100000L * n, get(m, 0x300000), "lock inc");
            assertEquals(100000L * n, get(m, 0x300008), "lock xadd");
            assertEquals(100000L * n, get(m, 0x300018), "increments under a cmpxchg spinlock");
        }
    }
}
