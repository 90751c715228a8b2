package dev.faultline.kvm;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.Caps;
import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Segment;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The kvm backend on the real /dev/kvm with 16-bit real-mode guests (the state a vCPU starts in):
 * RAM slot 0 is [0, 64 KiB); code runs at 0x1000 with CS base 0.
 */
class RealModeKvmTest {
    static final long RAM = 0x10000, CODE = 0x1000;

    KvmHypervisor kvm;
    Vm vm;
    HostMemory ram;
    Vcpu vcpu;

    @BeforeEach
    void setUp() {
        kvm = KvmAssumptions.openKvmOrSkip();
        vm = kvm.createVm(Caps.VM_TYPE_DEFAULT);
        ram = HostMemory.anonymous(RAM);
        vm.setMemorySlot(MemorySlot.of(0, 0, ram, 0, RAM, 0));
        vcpu = vm.createVcpu(0);
    }

    @AfterEach
    void tearDown() {
        if (vm != null) vm.close();
        if (ram != null) ram.close();
        if (kvm != null) kvm.close();
    }

    /** Loads {@code code} at 0x1000 and points the vCPU at it, with DS base {@code dsSelector << 4}. */
    void load(int dsSelector, int... code) {
        for (int i = 0; i < code.length; i++) ram.segment().set(ValueLayout.JAVA_BYTE, CODE + i, (byte) code[i]);
        Sregs s = vcpu.getSregs();
        Sregs real = new Sregs(withBase(s.cs(), 0, 0), withBase(s.ds(), dsSelector << 4, dsSelector), s.es(), s.fs(), s.gs(),
                s.ss(), s.tr(), s.ldt(), s.gdt(), s.idt(), s.cr0(), s.cr2(), s.cr3(), s.cr4(), s.cr8(), s.efer(), s.apicBase());
        vcpu.setSregs(real);
        Regs r = new Regs();
        r.rip = CODE;
        vcpu.setRegs(r);
    }

    static Segment withBase(Segment s, long base, int selector) {
        return new Segment(base, s.limit(), selector, s.type(), s.present(), s.dpl(), s.db(), s.s(), s.l(), s.g(), s.avl(), s.unusable());
    }

    @Test
    void shouldStartInRealModeWithTheResetSegments() {
        Sregs s = vcpu.getSregs();
        assertEquals(0, s.cr0() & Sregs.CR0_PE, "protection off after KVM_CREATE_VCPU");
        assertEquals(0xf000, s.cs().selector());
        assertEquals(0xffff0000L, s.cs().base());
    }

    @Test
    void shouldRoundTripSregsAndRegsThroughTheKernel() {
        load(0x2000, 0xf4);
        Sregs s = vcpu.getSregs();
        assertEquals(0x20000, s.ds().base());
        assertEquals(0x2000, s.ds().selector());
        assertEquals(0, s.cs().base());
        Regs r = new Regs();
        for (int i = 0; i < 16; i++) r.gpr[i] = 0x1111L * (i + 1);
        r.rip = CODE;
        vcpu.setRegs(r);
        Regs back = vcpu.getRegs();
        assertEquals(r, back, "every register lands in its kvm_regs slot and back");
    }

    @Test
    void shouldReportOutAsIoWithPortSizeAndData() {
        load(0, 0xb0, 0x42, 0xe6, 0x10,         // mov al, 0x42; out 0x10, al
                0xb8, 0x34, 0x12, 0xe7, 0x12,   // mov ax, 0x1234; out 0x12, ax
                0xf4);                          // hlt
        VcpuExit.Io io = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
        assertTrue(io.isOut());
        assertEquals(0x10, io.port());
        assertEquals(1, io.size());
        assertEquals(0x42, io.value());
        io = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
        assertEquals(0x12, io.port());
        assertEquals(2, io.size());
        assertEquals(0x1234, io.value());
        assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
    }

    @Test
    void shouldCompleteInWithTheValueTheGuestThenSendsBack() {
        load(0, 0xe4, 0x20,       // in al, 0x20
                0xe6, 0x21,       // out 0x21, al
                0xf4);
        VcpuExit.Io in = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
        assertFalse(in.isOut());
        assertEquals(0x20, in.port());
        in.completeIn(0x5a);
        VcpuExit.Io out = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
        assertEquals(0x21, out.port());
        assertEquals(0x5a, out.value());
        assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
    }

    @Test
    void shouldReportMmioOutsideMemslotsAndCompleteTheRead() {
        load(0x2000,                                  // DS base 0x20000: no memslot there
                0xa1, 0x00, 0x00,                     // mov ax, [0]
                0xe7, 0x10,                           // out 0x10, ax
                0xc7, 0x06, 0x02, 0x00, 0xef, 0xbe,   // mov word [2], 0xbeef
                0xf4);
        VcpuExit.Mmio read = assertInstanceOf(VcpuExit.Mmio.class, vcpu.run());
        assertEquals(0x20000, read.gpa());
        assertEquals(2, read.length());
        assertFalse(read.isWrite());
        read.completeRead(0x4321);
        VcpuExit.Io io = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
        assertEquals(0x4321, io.value());
        VcpuExit.Mmio write = assertInstanceOf(VcpuExit.Mmio.class, vcpu.run());
        assertEquals(0x20002, write.gpa());
        assertTrue(write.isWrite());
        assertEquals(0xbeef, write.value());
        assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
    }

    @Test
    void shouldTurnAnUnreachableMemslotReadIntoAMemoryFaultAndCompleteItOnceRepaired() {
        try (HostMemory slot1 = HostMemory.anonymous(0x10000)) {
            vm.setMemorySlot(MemorySlot.of(1, 0x10000, slot1, 0, 0x10000, 0));
            slot1.segment().set(ValueLayout.JAVA_SHORT, 0x10, (short) 0x7777);
            slot1.protect(0, 0x10000, Libc.PROT_NONE);
            load(0x1000,                        // DS base 0x10000: slot 1
                    0xa1, 0x10, 0x00,           // mov ax, [0x10]
                    0xe7, 0x10,                 // out 0x10, ax
                    0xf4);
            VcpuExit.MemoryFault f = assertInstanceOf(VcpuExit.MemoryFault.class, vcpu.run());
            assertEquals(VcpuExit.MemoryFault.Origin.MMIO_IN_MEMSLOT, f.origin());
            assertEquals(MemoryFaultFlags.READ, f.flags());
            assertEquals(0x10010, f.gpa());
            assertEquals(2, f.size());
            assertEquals(Errno.EFAULT, f.errno());

            // Not repaired: the same fault again, without entering the guest.
            VcpuExit again = vcpu.run();
            assertSame(f, again);
            assertEquals(0x10010, f.gpa());

            slot1.protect(0, 0x10000, Libc.PROT_READ | Libc.PROT_WRITE);
            VcpuExit.Io io = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
            assertEquals(0x7777, io.value(), "the read completes with the repaired memory's contents");
            assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
        }
    }

    @Test
    void shouldTurnAnUnreachableMemslotWriteIntoAMemoryFaultAndNotLoseTheStore() {
        try (HostMemory slot1 = HostMemory.anonymous(0x10000)) {
            vm.setMemorySlot(MemorySlot.of(1, 0x10000, slot1, 0, 0x10000, 0));
            slot1.protect(0, 0x10000, Libc.PROT_NONE);
            load(0x1000,
                    0xc7, 0x06, 0x20, 0x00, 0xef, 0xbe,   // mov word [0x20], 0xbeef
                    0xf4);
            VcpuExit.MemoryFault f = assertInstanceOf(VcpuExit.MemoryFault.class, vcpu.run());
            assertEquals(MemoryFaultFlags.WRITE, f.flags());
            assertEquals(0x10020, f.gpa());
            assertEquals(2, f.size());
            slot1.protect(0, 0x10000, Libc.PROT_READ | Libc.PROT_WRITE);
            assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
            assertEquals((short) 0xbeef, slot1.segment().get(ValueLayout.JAVA_SHORT, 0x20), "the store landed exactly once");
        }
    }

    @Test
    void shouldStopAGuestSpinningForeverWhenKicked() throws Exception {
        // inc word [0x500]; jmp back: the counter in host memory proves the guest is running.
        load(0, 0xff, 0x06, 0x00, 0x05, 0xeb, 0xfa);
        MemorySegment counter = ram.segment().asSlice(0x500, 2);
        AtomicReference<Object> result = new AtomicReference<>();
        for (int round = 0; round < 2; round++) {
            result.set(null);
            Thread t = Thread.ofPlatform().start(() -> {
                try { result.set(vcpu.run().record()); } catch (Throwable e) { result.set(e); }
            });
            short start = counter.get(ValueLayout.JAVA_SHORT, 0);
            while (counter.get(ValueLayout.JAVA_SHORT, 0) == start) Thread.onSpinWait();
            vcpu.kick();
            t.join();
            assertEquals("intr", String.valueOf(result.get()), "round " + round);
        }
        long ip = vcpu.getRegs().rip;
        assertTrue(ip >= CODE && ip < CODE + 6, "stopped inside the loop, rip 0x" + Long.toHexString(ip));
    }

    @Test
    void shouldReturnInterruptedOnceForAKickBeforeRunAndThenRunNormally() {
        load(0, 0xf4);
        vcpu.kick();
        assertInstanceOf(VcpuExit.Interrupted.class, vcpu.run());
        assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
    }

    @Test
    void shouldRefuseTheExitOnMissingFlagWhichOnlyTheRefBackendHas() {
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                () -> vm.setMemorySlot(MemorySlot.of(2, 0x40000, ram, 0, 0x1000, MemslotFlags.EXIT_ON_MISSING)));
        assertTrue(e.getMessage().contains("EXIT_ON_MISSING"), e.getMessage());
    }

    @Test
    void shouldNameTheIoctlErrnoAndSlotWhenKvmRefusesAMemslot() {
        // Overlaps slot 0: EEXIST.
        ErrnoException e = assertThrows(ErrnoException.class, () -> vm.setMemorySlot(MemorySlot.of(5, 0x8000, ram, 0, 0x1000, 0)));
        assertTrue(e.call().startsWith("KVM_SET_USER_MEMORY_REGION"), e.call());
        assertEquals(Errno.EEXIST, e.errno());
        assertTrue(e.getMessage().contains("slot 5 gpa 0x8000"), e.getMessage());
    }

    @Test
    void shouldDeleteASlotWithSizeZeroAndThenReportItsRangeAsMmio() {
        try (HostMemory slot1 = HostMemory.anonymous(0x10000)) {
            vm.setMemorySlot(MemorySlot.of(1, 0x10000, slot1, 0, 0x10000, 0));
            assertEquals(2, vm.memorySlots().size());
            vm.setMemorySlot(new MemorySlot(1, 0, 0x10000, 0, null, 0, null, 0));
            assertEquals(1, vm.memorySlots().size());
            load(0x1000, 0xa1, 0x00, 0x00, 0xf4);
            VcpuExit.Mmio m = assertInstanceOf(VcpuExit.Mmio.class, vcpu.run());
            assertEquals(0x10000, m.gpa());
        }
    }

    @Test
    void shouldLogDirtyPagesOfASlotThatAsksForIt() {
        try (HostMemory slot1 = HostMemory.anonymous(0x10000)) {
            vm.setMemorySlot(MemorySlot.of(1, 0x10000, slot1, 0, 0x10000, MemslotFlags.LOG_DIRTY_PAGES));
            load(0x1000, 0xc7, 0x06, 0x00, 0x30, 0x01, 0x00, 0xf4);   // mov word [0x3000], 1: page 3 of slot 1
            assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
            MemorySegment bitmap = java.lang.foreign.Arena.ofAuto().allocate(8, 8);
            vm.getDirtyLog(1, bitmap);
            assertEquals(1L << 3, bitmap.get(ValueLayout.JAVA_LONG, 0));
            vm.getDirtyLog(1, bitmap);
            assertEquals(0, bitmap.get(ValueLayout.JAVA_LONG, 0), "reading the log cleared it");
        }
    }
}
