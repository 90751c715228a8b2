package dev.faultline.ref;

import static dev.faultline.hv.MemoryFaultFlags.EXEC;
import static dev.faultline.hv.MemoryFaultFlags.PRIVATE;
import static dev.faultline.hv.MemoryFaultFlags.READ;
import static dev.faultline.hv.MemoryFaultFlags.WRITE;
import static dev.faultline.ref.FaultVm.efault;
import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.Caps;
import dev.faultline.hv.ExitReason;
import dev.faultline.hv.MemoryFaultReasons;
import dev.faultline.hv.Regs;
import dev.faultline.hv.VcpuExit;
import dev.faultline.ref.FaultVm.Fault;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/** The exit itself, exit on missing, no stale data and the per-reason opt-in, on the ref backend. */
class RefMemoryFaultTest {

    /** Runs to HLT; each memory-fault exit is recorded and handed to {@code resolve}. */
    static List<Fault> runResolving(RefVcpu v, java.util.function.Consumer<VcpuExit.MemoryFault> resolve) {
        List<Fault> faults = new ArrayList<>();
        for (int n = 0; n < 1000; n++) {
            VcpuExit e = v.run();
            if (e instanceof VcpuExit.MemoryFault f) {
                faults.add(Fault.of(f));
                resolve.accept(f);
                continue;
            }
            assertEquals(ExitReason.HLT, e.reason(), () -> "unexpected exit " + e.record() + " after " + faults);
            return faults;
        }
        throw new AssertionError("no HLT after 1000 exits: " + faults);
    }

    @Test
    void shouldExitOnMissingPagesWithAccessFlagsAndCompleteEachAccessExactlyOnce() {
        byte[] img = Toolchain.assemble("""
                mov $0x400000, %ebx
                addq $5, (%rbx)                  # read-modify-write of a missing page
                movq $7, 0x401008                # store to a missing page
                mov 0x402010, %rcx               # load from a missing page
                movabs $0x1122334455667788, %rdx
                mov %rdx, 0x403ffc               # store crossing into a missing page
                mov $0x500000, %eax
                call *%rax                       # fetch from a missing page
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_DEFAULT, true)) {
            m.missing.markPresent(0x403000, 0x1000);
            List<Long> installs = new ArrayList<>();
            List<Fault> faults = runResolving(m.vcpu(), f -> {
                long gpa = f.gpa();
                if (gpa == 0x400000) m.write64(0x400000, 37);
                if (gpa == 0x402000) m.write64(0x402010, 0x1234);
                if (gpa == 0x404000) assertEquals(0, m.read64(0x403ff8), "no half of the crossing store may land before the fault is resolved");
                if (gpa == 0x500000) m.mem.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0x500000, (byte) 0xc3);   // ret
                installs.add(gpa);
                m.missing.markPresent(gpa, 0x1000);
            });
            assertEquals(List.of(efault(READ, 0x400000), efault(WRITE, 0x401000), efault(READ, 0x402000),
                    efault(WRITE, 0x404000), efault(EXEC, 0x500000)), faults);
            assertEquals(42, m.read64(0x400000), "the add happened once, on the installed value");
            assertEquals(7, m.read64(0x401008));
            Regs r = m.vcpu().getRegs();
            assertEquals(0x1234, r.gpr[Regs.RCX], "the load saw the installed data");
            assertEquals(0x1122334455667788L, m.mem.get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, 0x403ffc));
            assertEquals(0, m.missing.missingPages() - ((FaultVm.RAM - FaultVm.MAIN) / 4096 - 1 - 5 - 1));
        }
    }

    @Test
    void shouldGiveEveryVcpuItsOwnExitsAndCountLockedIncrementsExactlyOnce() throws Exception {
        // Each vCPU adds 1000 to a shared counter page and writes its own page; all pages start missing.
        byte[] img = Toolchain.assemble("""
                mov $1000, %ecx
                1: lock incq 0x600000
                dec %ecx
                jnz 1b
                mov %rdi, %rax
                shl $12, %rax
                add $0x700000, %rax
                mov %rdi, (%rax)
                hlt
                """);
        int n = 3;
        try (FaultVm m = new FaultVm(img, n, Caps.VM_TYPE_DEFAULT, true)) {
            List<List<Fault>> perVcpu = new ArrayList<>();
            List<Thread> threads = new ArrayList<>();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            for (int i = 0; i < n; i++) {
                List<Fault> mine = new ArrayList<>();
                perVcpu.add(mine);
                RefVcpu v = m.vcpus.get(i);
                threads.add(Thread.ofPlatform().start(() -> {
                    try {
                        mine.addAll(runResolving(v, f -> m.missing.markPresent(f.gpa(), 0x1000)));
                    } catch (Throwable t) {
                        failure.set(t);
                    }
                }));
            }
            for (Thread t : threads) t.join();
            if (failure.get() != null) throw new AssertionError(failure.get());
            assertEquals(3000, m.read64(0x600000));
            for (int i = 0; i < n; i++) {
                List<Fault> mine = perVcpu.get(i);
                assertEquals(efault(WRITE, 0x700000 + i * 0x1000L), mine.getLast(), "vCPU " + i + " exits for its own page last");
                assertTrue(mine.size() <= 2, "at most the counter page and its own page: " + mine);
                assertEquals(i, m.read64(0x700000 + i * 0x1000L));
                if (mine.size() == 2) assertEquals(efault(WRITE, 0x600000), mine.getFirst());
            }
        }
    }

    @Test
    void shouldFailLoudlyWhenAnotherThreadFillsTheExit() throws Exception {
        try (FaultVm m = new FaultVm(Toolchain.assemble("hlt"), 1, Caps.VM_TYPE_DEFAULT, false)) {
            AtomicReference<Throwable> seen = new AtomicReference<>();
            Thread t = Thread.ofPlatform().start(() -> {
                try {
                    m.vcpu().fillMemoryFaultFromThisThread(READ, 0x400000);
                } catch (Throwable e) {
                    seen.set(e);
                }
            });
            t.join();
            assertInstanceOf(AssertionError.class, seen.get());
            assertTrue(seen.get().getMessage().contains("not by the vCPU's running thread"), seen.get().getMessage());
            assertEquals(ExitReason.HLT, m.vcpu().run().reason(), "the vCPU's own exit is untouched");
        }
    }

    @Test
    void shouldFailLoudlyWhenAMemoryFaultWouldOverwriteAnExitPreparedInTheSameRun() {
        // out completes its instruction and prepares an I/O exit; a memory fault in the same run must not replace it.
        try (FaultVm m = new FaultVm(Toolchain.assemble("out %al, $0x80\nhlt"), 1, Caps.VM_TYPE_DEFAULT, false)) {
            RefVcpu v = m.vcpu();
            AssertionError e = assertThrows(AssertionError.class, () -> v.runWithHookAfterExecute(
                    () -> v.fillMemoryFaultFromThisThread(WRITE, 0x400000)));
            assertTrue(e.getMessage().contains("would overwrite exit 2"), e.getMessage());
        }
    }

    @Test
    void shouldNeverCarryMemoryFaultDataWithAnotherErrno() {
        try (FaultVm m = new FaultVm(Toolchain.assemble("hlt"), 1, Caps.VM_TYPE_DEFAULT, false)) {
            RefVcpu v = m.vcpu();
            AssertionError e = assertThrows(AssertionError.class, () -> v.runWithHookAfterExecute(
                    () -> v.memoryFault(READ, 0x400000, Errno.EINVAL, MemoryFaultReasons.MISSING)));
            assertTrue(e.getMessage().contains("only EFAULT/EHWPOISON"), e.getMessage());
        }
    }

    @Test
    void shouldDetectABareEfaultWhereTheExitMustBeFilled() {
        try (FaultVm m = new FaultVm(Toolchain.assemble("hlt"), 1, Caps.VM_TYPE_DEFAULT, false)) {
            RefVcpu v = m.vcpu();
            v.forceBareFaultOnNextRun(Errno.EFAULT, MemoryFaultReasons.MISSING);
            AssertionError e = assertThrows(AssertionError.class, v::run);
            assertTrue(e.getMessage().contains("bare EFAULT"), e.getMessage());
        }
    }

    @Test
    void shouldResetTheExitAtEveryEntrySoABareEfaultNeverReturnsTheLastMemoryFault() {
        byte[] img = Toolchain.assemble("""
                mov 0x400000, %rax
                mov 0x401000, %rax
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_DEFAULT, true)) {
            RefVcpu v = m.vcpu();
            VcpuExit.MemoryFault f = (VcpuExit.MemoryFault) v.run();
            assertEquals(efault(READ, 0x400000), Fault.of(f));
            m.missing.markPresent(0x400000, 0x1000);
            m.vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, MemoryFaultReasons.POISON);   // MISSING no longer annotated
            ErrnoException e = assertThrows(ErrnoException.class, v::run);
            assertEquals(Errno.EFAULT, e.errno());
            assertTrue(e.getMessage().contains("stale"), e.getMessage());
            m.vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, MemoryFaultReasons.VALID);
            f = (VcpuExit.MemoryFault) v.run();
            assertEquals(efault(READ, 0x401000), Fault.of(f), "the fault is reported again, filled, once opted in");
            m.missing.markPresent(0x401000, 0x1000);
            assertEquals(ExitReason.HLT, v.run().reason());
        }
    }

    /** Seed 000's check, transcribed: {@code return !(reasons & !valid_flags);} with C's logical not. */
    static boolean seedCheckAccepts(long reasons, long validFlags) {
        long notValid = validFlags == 0 ? 1 : 0;
        return (reasons & notValid) == 0;
    }

    @Test
    void shouldRejectUnknownReasonBitsThatTheSeedsLogicalNotCheckLetsThrough() {
        long unknownBit = 1L << 5;
        assertTrue(seedCheckAccepts(unknownBit, MemoryFaultReasons.VALID), "the seed's check accepts an unknown reason");
        assertFalse(MemoryFaultReasons.isValid(unknownBit));
        try (FaultVm m = new FaultVm(Toolchain.assemble("hlt"), 1, Caps.VM_TYPE_DEFAULT, false)) {
            ErrnoException e = assertThrows(ErrnoException.class,
                    () -> m.vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, MemoryFaultReasons.MISSING | unknownBit));
            assertEquals(Errno.EINVAL, e.errno());
            assertEquals(MemoryFaultReasons.VALID, m.vm.checkExtension(Caps.FAULTLINE_MEMORY_FAULT_EXIT));
            m.vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, MemoryFaultReasons.VALID);
            m.vm.enableCap(Caps.FAULTLINE_MEMORY_FAULT_EXIT, 0);
        }
    }

    @Test
    void shouldReportMemoryFaultInfoAsInformationalOnly() {
        try (FaultVm m = new FaultVm(Toolchain.assemble("hlt"), 1, Caps.VM_TYPE_DEFAULT, false)) {
            assertEquals(1, m.vm.checkExtension(Caps.MEMORY_FAULT_INFO));
            ErrnoException e = assertThrows(ErrnoException.class, () -> m.vm.enableCap(Caps.MEMORY_FAULT_INFO, 1));
            assertEquals(Errno.EINVAL, e.errno());
        }
    }

    @Test
    void shouldRefuseExitOnMissingWithoutABitmapCoveringTheSlot() {
        try (FaultVm m = new FaultVm(Toolchain.assemble("hlt"), 1, Caps.VM_TYPE_DEFAULT, false)) {
            var main = m.vm.memorySlots().get(1);
            ErrnoException e = assertThrows(ErrnoException.class, () -> m.vm.setMemorySlot(new dev.faultline.hv.MemorySlot(
                    main.slot(), dev.faultline.hv.MemslotFlags.EXIT_ON_MISSING, main.gpa(), main.size(), main.memory(), main.memoryOffset(), null, 0)));
            assertEquals(Errno.EINVAL, e.errno());
            e = assertThrows(ErrnoException.class, () -> m.vm.setMemorySlot(main.withUserfault(
                    dev.faultline.hv.UserfaultBitmap.allMissing(main.gpa(), 0x1000))));
            assertEquals(Errno.EINVAL, e.errno());
        }
    }

    @Test
    void shouldReportPoisonAsEhwpoisonAndResumeAfterTheVmmReplacedThePage() {
        byte[] img = Toolchain.assemble("""
                mov 0x600008, %rax
                movq $9, 0x601000
                hlt
                """);
        try (FaultVm m = new FaultVm(img, 1, Caps.VM_TYPE_DEFAULT, false)) {
            m.write64(0x600008, 0xdead);
            m.vm.injectPoison(0x600000);
            m.vm.injectPoison(0x601000);
            List<Fault> faults = runResolving(m.vcpu(), f -> {
                if (f.gpa() == 0x600000) m.write64(0x600008, 0xc1ea);   // the clean copy
                m.vm.clearPoison(f.gpa());
            });
            assertEquals(List.of(new Fault("EHWPOISON", READ, 0x600000, 0x1000), new Fault("EHWPOISON", WRITE, 0x601000, 0x1000)), faults);
            assertEquals(0xc1ea, m.vcpu().getRegs().gpr[Regs.RAX]);
            assertEquals(9, m.read64(0x601000));
        }
    }
}
