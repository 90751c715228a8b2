package dev.faultline.ref;

import static dev.faultline.hv.MemoryFaultFlags.READ;
import static dev.faultline.hv.MemoryFaultFlags.WRITE;
import static dev.faultline.ref.FaultVm.efault;
import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.Caps;
import dev.faultline.hv.ExitReason;
import dev.faultline.hv.Regs;
import dev.faultline.hv.VcpuExit;
import dev.faultline.ref.FaultVm.Fault;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** Seed 003's page-table-walk faults and seed 004's asynchronous page faults without infinite loops. */
class RefPageWalkAndAsyncTest {
    /** Page tables at 0x300000.. written by the VMM: va 0x8000000000 → gpa 0x600000 (PT page 0x303000). */
    static void writeAliasTables(FaultVm m, long leafFlags) {
        m.write64(0x300000, m.read64(0x10000));
        m.write64(0x300008, 0x301003);
        m.write64(0x301000, 0x302003);
        m.write64(0x302000, 0x303003);
        m.write64(0x303000, 0x600003 | leafFlags);
    }

    static final String READ_ALIAS = """
            mov $0x300000, %eax
            mov %rax, %cr3
            movabs $0x8000000000, %rbx
            mov (%rbx), %rax
            hlt
            """;

    @Test
    void shouldNameTheMissingPageTablePageAsAWriteBeforeTheDataPage() {
        try (FaultVm m = new FaultVm(Toolchain.assemble(READ_ALIAS), 1, Caps.VM_TYPE_DEFAULT, true)) {
            writeAliasTables(m, 0);
            m.missing.markPresent(0x300000, 0x3000);           // PML4, PDPT, PD present; PT page 0x303000 and data missing
            m.write64(0x600000, 0xabcd);
            List<Fault> faults = RefMemoryFaultTest.runResolving(m.vcpu(), f -> m.missing.markPresent(f.gpa(), 0x1000));
            assertEquals(List.of(efault(WRITE, 0x303000), efault(READ, 0x600000)), faults);
            assertEquals(0xabcd, m.vcpu().getRegs().gpr[Regs.RAX]);
            assertEquals(0x20, m.read64(0x303000) & 0x20, "the walk set Accessed in the PT entry once the page was there");
        }
    }

    @Test
    void shouldNameAMismatchedPageTablePageWithTheWalksKind() {
        try (FaultVm m = new FaultVm(Toolchain.assemble(READ_ALIAS), 1, Caps.VM_TYPE_SW_PROTECTED, false)) {
            writeAliasTables(m, 0);
            m.vm.setMemoryAttributes(0x303000, 0x1000, Caps.MEMORY_ATTRIBUTE_PRIVATE);   // PT page private, reached shared
            m.write64(0x600000, 0x77);
            List<Fault> faults = RefMemoryFaultTest.runResolving(m.vcpu(),
                    f -> m.vm.setMemoryAttributes(f.gpa(), 0x1000, f.isPrivate() ? Caps.MEMORY_ATTRIBUTE_PRIVATE : 0));
            assertEquals(List.of(efault(WRITE, 0x303000)), faults);
        }
    }

    @Test
    void shouldResolveMissingPagesInTheBackgroundWithoutExits() {
        byte[] img = Toolchain.assemble("""
                mov 0x600000, %rax
                add 0x601000, %rax
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_DEFAULT, true)) {
            AtomicInteger calls = new AtomicInteger();
            m.vm.enableAsyncPageFaults(gpa -> {
                calls.incrementAndGet();
                m.write64(gpa, gpa >>> 12);
                m.missing.markPresent(gpa, 0x1000);
                return true;
            }, false);
            assertEquals(ExitReason.HLT, m.vcpu().run().reason(), "no exit: both pages came in the background");
            assertEquals(0x600 + 0x601, m.vcpu().getRegs().gpr[Regs.RAX]);
            assertEquals(2, calls.get());
            assertEquals(2, m.vcpu().asyncPageFaultAttempts());
        }
    }


    @Test
    void shouldTurnAFailedBackgroundResolutionIntoOneMemoryFaultExitAfterOneRetry() {
        byte[] img = Toolchain.assemble("""
                mov 0x600000, %rax
                mov 0x666000, %rcx
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_DEFAULT, true)) {
            m.vm.enableAsyncPageFaults(gpa -> {
                if (gpa == 0x666000) return false;          // the page source cannot provide it
                m.missing.markPresent(gpa, 0x1000);
                return true;
            }, false);
            RefVcpu v = m.vcpu();
            VcpuExit.MemoryFault f = (VcpuExit.MemoryFault) v.run();
            assertEquals(efault(READ, 0x666000), Fault.of(f));
            assertEquals(2, v.asyncPageFaultAttempts(), "one background attempt per page, then the failing gfn went synchronous");
            m.write64(0x666000, 5);
            m.missing.markPresent(0x666000, 0x1000);         // the VMM resolved it synchronously
            assertEquals(ExitReason.HLT, v.run().reason());
            assertEquals(5, v.getRegs().gpr[Regs.RCX]);
        }
    }

    @Test
    void shouldLoopForeverUnderTheNaiveDesignUntilKicked() throws Exception {
        byte[] img = Toolchain.assemble("mov 0x666000, %rcx\nhlt");
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_DEFAULT, true)) {
            m.vm.enableAsyncPageFaults(gpa -> false, true);
            RefVcpu v = m.vcpu();
            Thread kicker = Thread.ofPlatform().start(() -> {
                while (v.asyncPageFaultAttempts() < 500) Thread.onSpinWait();
                v.kick();
            });
            VcpuExit e = v.run();
            kicker.join();
            assertEquals(ExitReason.INTR, e.reason(), "only the kick ends the naive retry loop");
            assertTrue(v.asyncPageFaultAttempts() >= 500, "retried " + v.asyncPageFaultAttempts() + " times");
        }
    }

    @Test
    void shouldBoundRetriesPerVcpuWhenSeveralVcpusTouchTheFailingPage() throws Exception {
        byte[] img = Toolchain.assemble("mov 0x666000, %rcx\nhlt");
        int n = 3;
        try (FaultVm m = new FaultVm(img, n, Caps.VM_TYPE_DEFAULT, true)) {
            m.vm.enableAsyncPageFaults(gpa -> false, false);
            Thread[] ts = new Thread[n];
            Fault[] first = new Fault[n];
            for (int i = 0; i < n; i++) {
                RefVcpu v = m.vcpus.get(i);
                int k = i;
                ts[i] = Thread.ofPlatform().start(() -> first[k] = Fault.of((VcpuExit.MemoryFault) v.run()));
            }
            for (Thread t : ts) t.join();
            for (int i = 0; i < n; i++) {
                assertEquals(efault(READ, 0x666000), first[i]);
                assertEquals(1, m.vcpus.get(i).asyncPageFaultAttempts());
            }
        }
    }
}
