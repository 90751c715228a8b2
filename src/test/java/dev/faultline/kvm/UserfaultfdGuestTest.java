package dev.faultline.kvm;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.BootSetup;
import dev.faultline.hv.Caps;
import dev.faultline.hv.Vcpu;
import dev.faultline.hv.VcpuExit;
import dev.faultline.hv.Vm;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import dev.faultline.sys.UffdEvents;
import dev.faultline.sys.Userfaultfd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

/**
 * A KVM guest faulting on userfaultfd-registered guest RAM, served by a handler thread (the shape of
 * issue 5's demand paging): the vCPU thread sleeps inside KVM_RUN until the page is installed.
 */
class UserfaultfdGuestTest {
    static final long RAM = 4L << 20, PAGE = 4096, LAZY = 3L << 20;

    @Test
    void shouldRunAGuestWhoseMissingPagesAHandlerThreadServes() throws Exception {
        KvmHypervisor kvm = KvmAssumptions.openKvmOrSkip();
        Userfaultfd uffd;
        try {
            uffd = Userfaultfd.open();
        } catch (ErrnoException e) {
            org.junit.jupiter.api.Assumptions.assumeTrue(false, "needs userfaultfd: " + e.getMessage());
            throw e;
        }
        try (kvm; uffd; HostMemory ram = HostMemory.anonymous(RAM); Vm vm = kvm.createVm(Caps.VM_TYPE_DEFAULT)) {
            vm.setMemorySlot(BootSetup.lowSlot(ram, 0));
            vm.setMemorySlot(BootSetup.mainSlot(ram, 0));
            BootSetup.writeSystemTables(ram.segment(), RAM);
            int[] code = {0x48, 0x8b, 0x04, 0x25, 0x08, 0x00, 0x30, 0x00,                     // mov rax, [0x300008]
                    0xe7, BootProtocol.PORT_REPORT,                                          // out 0xf0, eax
                    0x48, 0xc7, 0x04, 0x25, 0x10, 0x10, 0x30, 0x00, 0x05, 0x00, 0x00, 0x00,  // mov qword [0x301010], 5
                    0xe7, BootProtocol.PORT_DONE, 0xf4};
            for (int i = 0; i < code.length; i++) ram.segment().set(ValueLayout.JAVA_BYTE, BootProtocol.DEFAULT_LOAD_GPA + i, (byte) code[i]);

            // [3 MiB, 4 MiB) starts missing and is served on demand.
            uffd.api(0);
            uffd.register(ram.address() + LAZY, RAM - LAZY, Userfaultfd.REGISTER_MODE_MISSING);
            int stop = Libc.check(Libc.eventfd(0, Libc.EFD_CLOEXEC), "eventfd", "handler stop");
            List<Long> served = new CopyOnWriteArrayList<>();
            Thread handler = Thread.ofPlatform().name("uffd-handler").start(() -> {
                Userfaultfd.Caller c = new Userfaultfd.Caller();
                UffdEvents events = new UffdEvents(16);
                MemorySegment page = Arena.ofAuto().allocate(PAGE, PAGE);
                while ((uffd.poll(c, stop, -1) & Userfaultfd.READY_OTHER) == 0) {
                    int n = uffd.readEvents(c, events);
                    for (int i = 0; i < n; i++) {
                        if (events.event(i) != Userfaultfd.EVENT_PAGEFAULT) continue;
                        long addr = events.pagefaultAddress(i);
                        long gpa = addr - ram.address();
                        page.set(ValueLayout.JAVA_LONG, 8, gpa | 0x42);     // the page says where it belongs
                        served.add(gpa); // before the copy: the copy wakes the vCPU, which may finish at once
                        uffd.copy(c, addr, page.address(), PAGE, 0);
                    }
                }
            });
            try {
                Vcpu vcpu = vm.createVcpu(0);
                BootSetup.boot(vcpu, BootProtocol.DEFAULT_LOAD_GPA, 0, 1);
                VcpuExit.Io report = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
                assertEquals(BootProtocol.PORT_REPORT, report.port());
                assertEquals(0x300042, report.value(), "the guest read the page the handler installed");
                VcpuExit.Io done = assertInstanceOf(VcpuExit.Io.class, vcpu.run());
                assertEquals(BootProtocol.PORT_DONE, done.port());
                assertEquals(5, ram.segment().get(ValueLayout.JAVA_LONG, 0x301010), "the guest's store to a served page");
                assertEquals(0x301042, ram.segment().get(ValueLayout.JAVA_LONG, 0x301008), "that page came from the handler");
                assertEquals(List.of(0x300000L, 0x301000L), served);
            } finally {
                MemorySegment one = Arena.ofAuto().allocate(8, 8);
                one.set(ValueLayout.JAVA_LONG, 0, 1);
                Libc.write(Libc.errnoSegment(), stop, one, 8);
                handler.join();
                Libc.close(stop);
            }
        }
    }
}
