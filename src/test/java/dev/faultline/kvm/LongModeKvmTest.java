package dev.faultline.kvm;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Caps;
import dev.faultline.hv.Regs;
import dev.faultline.hv.Sregs;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import dev.faultline.sys.HostMemory;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A 64-bit guest booted by {@link BootSetup} on the real /dev/kvm: slot 0 [0, 1 MiB) and slot 1
 * [1 MiB, RAM) from one host mapping, code at 0x200000.
 */
class LongModeKvmTest {
    static final long RAM = 4L << 20;

    KvmHypervisor kvm;
    Vm vm;
    HostMemory ram;
    Vcpu vcpu;

    @BeforeEach
    void setUp() {
        kvm = KvmAssumptions.openKvmOrSkip();
        vm = kvm.createVm(Caps.VM_TYPE_DEFAULT);
        ram = HostMemory.anonymous(RAM);
        vm.setMemorySlot(BootSetup.lowSlot(ram, 0));
        vm.setMemorySlot(BootSetup.mainSlot(ram, 0));
        BootSetup.writeSystemTables(ram.segment(), RAM);
        vcpu = vm.createVcpu(0);
        BootSetup.boot(vcpu, BootProtocol.DEFAULT_LOAD_GPA, 0, 1);
    }

    @AfterEach
    void tearDown() {
        if (vm != null) vm.close();
        if (ram != null) ram.close();
        if (kvm != null) kvm.close();
    }

    void load(int... code) {
        for (int i = 0; i < code.length; i++) ram.segment().set(ValueLayout.JAVA_BYTE, BootProtocol.DEFAULT_LOAD_GPA + i, (byte) code[i]);
    }

    @Test
    void shouldEnterLongModeAsTheBootProtocolSays() {
        Sregs s = vcpu.getSregs();
        assertNotEquals(0, s.efer() & Sregs.EFER_LMA, "EFER.LMA");
        assertNotEquals(0, s.cr0() & Sregs.CR0_PG, "paging on");
        assertEquals(BootProtocol.PML4_GPA, s.cr3());
        assertTrue(s.cs().l(), "64-bit code segment");
    }

    @Test
    void shouldRunAComputationAndReportItOnTheDonePort() {
        load(0x48, 0xc7, 0xc0, 0x06, 0x00, 0x00, 0x00,         // mov rax, 6
                0x48, 0xc7, 0xc1, 0x07, 0x00, 0x00, 0x00,      // mov rcx, 7
                0x48, 0x0f, 0xaf, 0xc1,                        // imul rax, rcx
                0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00, // mov [0x300000], rax
                0x48, 0x8b, 0x1c, 0x24,                        // mov rbx, [rsp] (the stack below 1 MiB is mapped)
                0xe7, BootProtocol.PORT_DONE,                  // out 0xf4, eax
                0xf4);                                         // hlt
        VcpuExit.Io done = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
        assertEquals(BootProtocol.PORT_DONE, done.port());
        assertEquals(4, done.size());
        assertEquals(42, done.value());
        assertEquals(42, ram.segment().get(ValueLayout.JAVA_LONG, 0x300000), "the guest's store is in host memory");
        assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
        Regs r = vcpu.getRegs();
        assertEquals(42, r.rax());
        assertEquals(7, r.get(Regs.RCX));
        assertEquals(BootProtocol.stackTop(0), r.rsp());
    }

    @Test
    void shouldReportMmioAboveRamThroughTheIdentityMap() {
        load(0x48, 0xb8, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x00, 0x00, 0x00,  // mov rax, 0xd0000000
                0x8b, 0x18,                                             // mov ebx, [rax]
                0xf4);
        VcpuExit.Mmio m = assertInstanceOf(VcpuExit.Mmio.class, vcpu.run());
        assertEquals(0xd0000000L, m.gpa());
        assertEquals(4, m.length());
        m.completeRead(0x12345678);
        assertInstanceOf(VcpuExit.Hlt.class, vcpu.run());
        assertEquals(0x12345678L, vcpu.getRegs().get(Regs.RBX));
    }
}
