package dev.faultline.kvm;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Caps;
import dev.faultline.hv.GuestMemfd;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * guest_memfd and memory attributes on this kernel's default VM type. Observed on the PVM-based 6.18
 * here: the slot is accepted, but guest reads of a gmem-only slot are served from userspace_addr
 * (USERSPACE_MARK), not from the guest_memfd; upstream TDP would read GMEM_MARK. The test accepts
 * either and prints which, so the difference is visible in the report.
 */
class GuestMemfdKvmTest {
    static final long RAM = 4L << 20, GMEM_GPA = 0x400000, GMEM_SIZE = 0x200000;
    static final long GMEM_MARK = 0x6e6e, USERSPACE_MARK = 0x7575;

    @Test
    void shouldAcceptAGuestMemfdSlotThroughRegion2AndRunAGuestThatReadsIt() {
        try (KvmHypervisor kvm = KvmAssumptions.openKvmOrSkip(); HostMemory ram = HostMemory.anonymous(RAM);
             Vm vm = kvm.createVm(Caps.VM_TYPE_DEFAULT)) {
            long flags = vm.checkExtension(Caps.GUEST_MEMFD_FLAGS);
            assumeTrue(vm.checkExtension(Caps.GUEST_MEMFD) > 0 && vm.checkExtension(Caps.USER_MEMORY2) > 0,
                    "needs KVM_CAP_GUEST_MEMFD and KVM_CAP_USER_MEMORY2");
            assumeTrue((flags & Caps.GUEST_MEMFD_FLAG_MMAP) != 0, "needs GUEST_MEMFD_FLAG_MMAP");
            long gflags = Caps.GUEST_MEMFD_FLAG_MMAP | (flags & Caps.GUEST_MEMFD_FLAG_INIT_SHARED);
            try (GuestMemfd gmem = vm.createGuestMemfd(GMEM_SIZE, gflags)) {
                assertTrue(gmem.fd() >= 0);
                assertEquals(GMEM_SIZE, gmem.size());
                long map = Libc.check(Libc.mmap(0, GMEM_SIZE, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, gmem.fd(), 0),
                        "mmap", "guest_memfd");
                try {
                    MemorySegment shared = MemorySegment.ofAddress(map).reinterpret(GMEM_SIZE);
                    shared.set(ValueLayout.JAVA_LONG, 0x1000, GMEM_MARK);
                    ram.segment().set(ValueLayout.JAVA_LONG, RAM - GMEM_SIZE + 0x1000, USERSPACE_MARK);
                    vm.setMemorySlot(MemorySlot.of(0, 0, ram, 0, BootProtocol.IMAGE_MIN_GPA, 0));
                    vm.setMemorySlot(MemorySlot.of(1, BootProtocol.IMAGE_MIN_GPA, ram, BootProtocol.IMAGE_MIN_GPA,
                            RAM - BootProtocol.IMAGE_MIN_GPA, 0));
                    // userspace_addr and the guest_memfd hold different marks: the value read says which backed it.
                    vm.setMemorySlot(new MemorySlot(2, MemslotFlags.GUEST_MEMFD, GMEM_GPA, GMEM_SIZE, ram, RAM - GMEM_SIZE, gmem, 0));
                    BootSetup.writeSystemTables(ram.segment(), RAM);
                    int[] code = {0x48, 0x8b, 0x04, 0x25, 0x00, 0x10, 0x40, 0x00,   // mov rax, [0x401000]
                            0xe7, BootProtocol.PORT_DONE, 0xf4};
                    for (int i = 0; i < code.length; i++) ram.segment().set(ValueLayout.JAVA_BYTE, BootProtocol.DEFAULT_LOAD_GPA + i, (byte) code[i]);
                    Vcpu vcpu = vm.createVcpu(0);
                    BootSetup.boot(vcpu, BootProtocol.DEFAULT_LOAD_GPA, 0, 1);
                    VcpuExit exit = vcpu.run();
                    System.out.println("guest read of a guest_memfd slot: " + exit.record());
                    VcpuExit.Io done = assertInstanceOf(VcpuExit.Io.class, exit);
                    assertEquals(BootProtocol.PORT_DONE, done.port());
                    assertTrue(done.value() == GMEM_MARK || done.value() == USERSPACE_MARK, "read 0x" + Long.toHexString(done.value()));
                } finally {
                    Libc.munmap(map, GMEM_SIZE);
                }
            }
        }
    }

    @Test
    void shouldRefuseMemoryAttributesOnTheDefaultVmTypeWithAnErrnoException() {
        try (KvmHypervisor kvm = KvmAssumptions.openKvmOrSkip(); Vm vm = kvm.createVm(Caps.VM_TYPE_DEFAULT)) {
            assumeTrue(vm.checkExtension(Caps.MEMORY_ATTRIBUTES) == 0, "this kernel supports attributes on the default type");
            ErrnoException e = assertThrows(ErrnoException.class,
                    () -> vm.setMemoryAttributes(0x100000, 0x1000, Caps.MEMORY_ATTRIBUTE_PRIVATE));
            assertEquals("KVM_SET_MEMORY_ATTRIBUTES", e.call());
            System.out.println("KVM_SET_MEMORY_ATTRIBUTES on a default VM: " + e.getMessage());
            assertTrue(e.errno() == Errno.ENOTTY || e.errno() == Errno.EINVAL, e.getMessage());
        }
    }
}
