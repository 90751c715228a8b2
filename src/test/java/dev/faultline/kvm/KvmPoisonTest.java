package dev.faultline.kvm;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Caps;
import dev.faultline.hv.MemoryFaultFlags;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import dev.faultline.sys.Userfaultfd;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * Poison on kvm through UFFDIO_POISON: the guest's access to the page is a memory-fault exit with
 * EHWPOISON (on this machine's KVM the access comes back as an MMIO exit inside the memslot whose
 * completion fails), nothing else of the page is readable, and a replacement is what the guest then
 * reads. Host reads of the page happen only after the replacement (a host read of a poisoned page is
 * a SIGBUS the JVM does not survive).
 */
class KvmPoisonTest {
    static final long RAM = 4L << 20, DATA = 0x300000;

    private static KvmHypervisor kvmWithPoisonOrSkip() {
        KvmHypervisor kvm = KvmAssumptions.openKvmOrSkip();
        boolean poison = Userfaultfd.offers(Userfaultfd.FEATURE_POISON);
        if (!poison) kvm.close();
        assumeTrue(poison, "needs userfaultfd with UFFD_FEATURE_POISON (Linux 6.6)");
        return kvm;
    }

    /** mov rax, [DATA+8]; out REPORT; mov qword [DATA+16], 5; out DONE; hlt */
    private static void loadGuest(HostMemory ram) {
        BootSetup.writeSystemTables(ram.segment(), RAM);
        int[] code = {0x48, 0x8b, 0x04, 0x25, 0x08, 0x00, 0x30, 0x00, 0xe7, BootProtocol.PORT_REPORT,
                0x48, 0xc7, 0x04, 0x25, 0x10, 0x00, 0x30, 0x00, 0x05, 0x00, 0x00, 0x00, 0xe7, BootProtocol.PORT_DONE, 0xf4};
        for (int i = 0; i < code.length; i++) ram.segment().set(ValueLayout.JAVA_BYTE, BootProtocol.DEFAULT_LOAD_GPA + i, (byte) code[i]);
        ram.segment().set(ValueLayout.JAVA_LONG, DATA + 8, 0x1111);
    }

    @Test
    void shouldReportTheGuestsAccessAsEhwpoisonUntilAReplacementIsMovedIn() {
        KvmHypervisor kvm = kvmWithPoisonOrSkip();
        try (kvm; HostMemory ram = HostMemory.anonymous(RAM); Vm vm = kvm.createVm(Caps.VM_TYPE_DEFAULT)) {
            vm.setMemorySlot(BootSetup.lowSlot(ram, 0));
            vm.setMemorySlot(BootSetup.mainSlot(ram, 0));
            loadGuest(ram);
            vm.injectPoison(DATA + 0x10); // any address in the page
            vm.injectPoison(DATA);        // again: nothing changes
            Vcpu vcpu = vm.createVcpu(0);
            BootSetup.boot(vcpu, BootProtocol.DEFAULT_LOAD_GPA, 0, 1);
            for (int i = 0; i < 3; i++) { // re-entering without a fix gives the same exit, never the data
                VcpuExit.MemoryFault f = assertInstanceOf(VcpuExit.MemoryFault.class, vcpu.run());
                assertEquals(Errno.EHWPOISON, f.errno());
                assertEquals(DATA + 8, f.gpa());
                assertEquals(MemoryFaultFlags.READ, f.flags());
            }
            assertThrows(ErrnoException.class, () -> vm.clearPoison(DATA), "kvm's poison goes only with the page");
            MemorySegment fresh = MemorySegment.ofArray(new byte[4096]);
            fresh.set(ValueLayout.JAVA_LONG_UNALIGNED, 8, 0x2222);
            vm.replacePoisoned(DATA, fresh);
            assertThrows(IllegalArgumentException.class, () -> vm.replacePoisoned(DATA, fresh), "not poisoned any more");
            VcpuExit.Io report = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
            assertEquals(BootProtocol.PORT_REPORT, report.port());
            assertEquals(0x2222, report.value(), "the guest read the replacement, not the old data (0x1111) or zeros");
            VcpuExit.Io done = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
            assertEquals(BootProtocol.PORT_DONE, done.port());
            assertEquals(5, ram.segment().get(ValueLayout.JAVA_LONG, DATA + 16), "the guest's store reached the new page, through the memslot");
        }
    }

    @Test
    void shouldLoseThePagesDataAndRefuseWhatItCannotPoison() {
        KvmHypervisor kvm = kvmWithPoisonOrSkip();
        try (kvm; HostMemory ram = HostMemory.anonymous(RAM); HostMemory shared = HostMemory.memfd("poison-test", RAM);
             Vm vm = kvm.createVm(Caps.VM_TYPE_DEFAULT)) {
            vm.setMemorySlot(BootSetup.lowSlot(ram, 0));
            vm.setMemorySlot(BootSetup.mainSlot(ram, 0));
            ram.segment().set(ValueLayout.JAVA_LONG, DATA, 0x77);
            vm.injectPoison(DATA);
            // process_vm_readv reads without SIGBUS: the page gives nothing back
            MemorySegment dst = java.lang.foreign.Arena.ofAuto().allocate(8, 8);
            assertEquals(-1, Libc.processVmReadv(Libc.errnoSegment(), Libc.getpid(), iov(dst), 1,
                    iov(MemorySegment.ofAddress(ram.address() + DATA).reinterpret(8)), 1));
            vm.replacePoisoned(DATA, MemorySegment.ofArray(new byte[4096]));
            assertEquals(0, ram.segment().get(ValueLayout.JAVA_LONG, DATA), "the poison took the data; the zero replacement is what is left");
            ErrnoException outside = assertThrows(ErrnoException.class, () -> vm.injectPoison(RAM + 0x1000));
            assertEquals(Errno.EINVAL, outside.errno());
            try (Vm other = kvm.createVm(Caps.VM_TYPE_DEFAULT)) {
                other.setMemorySlot(BootSetup.mainSlot(shared, 0));
                ErrnoException memfd = assertThrows(ErrnoException.class, () -> other.injectPoison(DATA));
                assertEquals(Errno.EOPNOTSUPP, memfd.errno());
                assertTrue(memfd.getMessage().contains("private anonymous"), memfd.getMessage());
            }
        }
    }

    private static MemorySegment iov(MemorySegment target) {
        MemorySegment v = java.lang.foreign.Arena.ofAuto().allocate(16, 8);
        v.set(ValueLayout.JAVA_LONG, 0, target.address());
        v.set(ValueLayout.JAVA_LONG, 8, target.byteSize());
        return v;
    }
}
