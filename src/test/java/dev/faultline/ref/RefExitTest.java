package dev.faultline.ref;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.ExitReason;
import dev.faultline.hv.Regs;
import dev.faultline.hv.VcpuExit;
import java.util.Random;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** Exits as KVM gives them: port I/O, MMIO (completed on re-entry), HLT, shutdown, emulation failure, kick. */
class RefExitTest {
    static final long MMIO = 0xc0000000L;

    @Test
    void shouldCompleteInOnReentryWithTheSizeSemanticsOfAlAxAndEax() {
        byte[] img = Toolchain.assemble("""
                movabs $0x1122334455667788, %rax
                in $0x60, %al
                mov %rax, %rbx
                movabs $0x1122334455667788, %rax
                mov $0x3f8, %dx
                in %dx, %ax
                mov %rax, %rcx
                movabs $0x1122334455667788, %rax
                in %dx, %eax
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            RefVcpu v = m.vcpu();
            VcpuExit.Io io = (VcpuExit.Io) v.run();
            assertFalse(io.isOut());
            assertEquals(0x60, io.port());
            assertEquals(1, io.size());
            io.completeIn(0xab);
            io = (VcpuExit.Io) v.run();
            assertEquals(0x3f8, io.port());
            assertEquals(2, io.size());
            io.completeIn(0xbeef);
            io = (VcpuExit.Io) v.run();
            assertEquals(4, io.size());
            io.completeIn(0xcafef00dL);
            assertEquals(ExitReason.HLT, v.run().reason());
            Regs r = m.regs();
            assertEquals(0x11223344556677abL, r.gpr[Regs.RBX]);
            assertEquals(0x112233445566beefL, r.gpr[Regs.RCX]);
            assertEquals(0xcafef00dL, r.gpr[Regs.RAX], "a 32-bit IN zero-extends into RAX");
        }
    }

    @Test
    void shouldExitForMmioWritesWithLengthAndDataAfterCompletingTheInstruction() {
        byte[] img = Toolchain.assemble("""
                mov $0xc0000000, %ebx
                movl $0x12345678, 4(%rbx)
                movw $0xbeef, 2(%rbx)
                movabs $0x0102030405060708, %rax
                mov %rax, 8(%rbx)
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            RefVcpu v = m.vcpu();
            VcpuExit.Mmio e = (VcpuExit.Mmio) v.run();
            assertTrue(e.isWrite());
            assertEquals(MMIO + 4, e.gpa());
            assertEquals(4, e.length());
            assertEquals(0x12345678L, e.value());
            long ripAfterFirst = m.regs().rip;
            e = (VcpuExit.Mmio) v.run();
            assertEquals(MMIO + 2, e.gpa());
            assertEquals(2, e.length());
            assertEquals(0xbeefL, e.value());
            e = (VcpuExit.Mmio) v.run();
            assertEquals(8, e.length());
            assertEquals(0x0102030405060708L, e.value());
            assertEquals(ExitReason.HLT, v.run().reason());
            assertTrue(ripAfterFirst > Toolchain.LOAD + 5, "RIP moved past the MMIO store before the exit");
        }
    }

    @Test
    void shouldReexecuteAnMmioReadWithTheValueUserspaceSupplied() {
        byte[] img = Toolchain.assemble("""
                mov $0xc0000000, %ebx
                mov 16(%rbx), %rax
                movzbl 3(%rbx), %ecx
                addl $5, 32(%rbx)
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            RefVcpu v = m.vcpu();
            VcpuExit.Mmio e = (VcpuExit.Mmio) v.run();
            assertFalse(e.isWrite());
            assertEquals(MMIO + 16, e.gpa());
            assertEquals(8, e.length());
            long ripAtRead = m.regs().rip;
            long retired = v.instructionsRetired();
            e.completeRead(0x8877665544332211L);
            e = (VcpuExit.Mmio) v.run();
            assertEquals(MMIO + 3, e.gpa());
            assertEquals(1, e.length());
            assertEquals(retired + 1, v.instructionsRetired(), "the load retired exactly once");
            assertNotEquals(ripAtRead, m.regs().rip);
            e.completeRead(0xf7);
            e = (VcpuExit.Mmio) v.run();
            assertFalse(e.isWrite(), "read-modify-write reads first");
            assertEquals(MMIO + 32, e.gpa());
            assertEquals(4, e.length());
            e.completeRead(0x100);
            e = (VcpuExit.Mmio) v.run();
            assertTrue(e.isWrite());
            assertEquals(MMIO + 32, e.gpa());
            assertEquals(0x105, e.value());
            assertEquals(ExitReason.HLT, v.run().reason());
            Regs r = m.regs();
            assertEquals(0x8877665544332211L, r.gpr[Regs.RAX]);
            assertEquals(0xf7, r.gpr[Regs.RCX]);
        }
    }

    @Test
    void shouldHaltWithRipAfterTheHltAndResumeOnTheNextRun() {
        byte[] img = Toolchain.assemble("hlt\nmov $7, %eax\nhlt\n");
        try (GuestMachine m = new GuestMachine(img)) {
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            assertEquals(Toolchain.LOAD + 1, m.regs().rip);
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            assertEquals(7, m.regs().rax());
        }
    }

    @Test
    void shouldShutDownOnAPageFaultWithNoIdtAsATripleFault() {
        byte[] img = Toolchain.assemble("movabs $0x20000000000, %rbx\nmov (%rbx), %rax\nhlt\n");
        try (GuestMachine m = new GuestMachine(img)) {
            VcpuExit e = m.vcpu().run();
            assertEquals(ExitReason.SHUTDOWN, e.reason());
            assertEquals(14, m.vcpu().lastExceptionVector());
            assertEquals(0x20000000000L, m.vcpu().getSregs().cr2());
            assertEquals(Toolchain.LOAD + 10, m.regs().rip, "RIP stays on the faulting instruction");
        }
    }

    @Test
    void shouldShutDownOnDivideErrorAndOnUd2() {
        try (GuestMachine m = new GuestMachine(Toolchain.assemble("xor %ecx, %ecx\nmov $1, %eax\ndiv %ecx\nhlt\n"))) {
            assertEquals(ExitReason.SHUTDOWN, m.vcpu().run().reason());
            assertEquals(0, m.vcpu().lastExceptionVector());
        }
        try (GuestMachine m = new GuestMachine(Toolchain.assemble("nop\nud2\n"))) {
            assertEquals(ExitReason.SHUTDOWN, m.vcpu().run().reason());
            assertEquals(6, m.vcpu().lastExceptionVector());
        }
    }

    @Test
    void shouldReportAnUnsupportedInstructionAsEmulationFailureWithItsBytes() {
        byte[] img = Toolchain.assemble("nop\nmovaps %xmm0, %xmm1\nhlt\n");
        try (GuestMachine m = new GuestMachine(img)) {
            VcpuExit e = m.vcpu().run();
            assertEquals(ExitReason.INTERNAL_ERROR, e.reason());
            VcpuExit.InternalError ie = (VcpuExit.InternalError) e;
            assertEquals(VcpuExit.InternalError.SUBERROR_EMULATION, ie.suberror());
            assertEquals(1, ie.data(0), "flags: instruction bytes valid");
            long w1 = ie.data(1);
            assertEquals(0x0f, (w1 >>> 8) & 0xff);
            assertEquals(0x28, (w1 >>> 16) & 0xff);
            assertEquals(0xc8, (w1 >>> 24) & 0xff);
            assertTrue(ie.detail().contains("0f 28 c8"), ie.detail());
            assertEquals(Toolchain.LOAD + 1, m.regs().rip);
            assertEquals(1, m.vcpu().instructionsRetired());
        }
    }

    @Test
    void shouldReturnInterruptedSoonAfterAKickAndThenContinue() throws Exception {
        byte[] img = Toolchain.assemble("1: inc %rax\njmp 1b\n");
        try (GuestMachine m = new GuestMachine(img);
             ScheduledExecutorService ex = Executors.newSingleThreadScheduledExecutor()) {
            RefVcpu v = m.vcpu();
            ex.schedule(v::kick, 50, TimeUnit.MILLISECONDS);
            assertEquals(ExitReason.INTR, v.run().reason());
            long first = m.regs().rax();
            assertTrue(first > 0);
            ex.schedule(v::kick, 20, TimeUnit.MILLISECONDS);
            assertEquals(ExitReason.INTR, v.run().reason());
            assertTrue(m.regs().rax() > first);
        }
    }

    @Test
    void shouldNeverLeaveTheExitOfThePreviousRunInPlace() {
        byte[] img = Toolchain.assemble("mov $1, %al\nout %al, $0xe9\nhlt\n");
        try (GuestMachine m = new GuestMachine(img)) {
            VcpuExit first = m.vcpu().run();
            assertEquals(ExitReason.IO, first.reason());
            VcpuExit second = m.vcpu().run();
            assertEquals(ExitReason.HLT, second.reason());
        }
    }

    /** Random bytes as a guest image: every run ends in a defined exit and no Java exception escapes. */
    @Test
    void shouldOnlyProduceDefinedExitsForRandomByteImages() throws Exception {
        Random rnd = new Random(Long.getLong("faultline.fuzzSeed", 42L));
        int[] counts = new int[64];
        try (ScheduledExecutorService ex = Executors.newSingleThreadScheduledExecutor()) {
            for (int trial = 0, trials = Integer.getInteger("faultline.fuzzTrials", 400); trial < trials; trial++) {
                byte[] img = new byte[8192];
                rnd.nextBytes(img);
                try (GuestMachine m = new GuestMachine(8L << 20, img, 1)) {
                    m.inHandler = port -> rnd.nextLong();
                    RefVcpu v = m.vcpu();
                    for (int n = 0; n < 30; n++) {
                        ScheduledFuture<?> kick = ex.schedule(v::kick, 20, TimeUnit.MILLISECONDS);
                        VcpuExit e = v.run();
                        kick.cancel(false);
                        counts[e.reason()]++;
                        assertTrue(e instanceof VcpuExit.Io || e instanceof VcpuExit.Mmio || e instanceof VcpuExit.Hlt
                                || e instanceof VcpuExit.Shutdown || e instanceof VcpuExit.InternalError
                                || e instanceof VcpuExit.Interrupted, () -> "unexpected exit " + e.record());
                        if (e instanceof VcpuExit.Io io && !io.isOut()) io.completeIn(rnd.nextLong());
                        if (e instanceof VcpuExit.Mmio mm && !mm.isWrite()) mm.completeRead(rnd.nextLong());
                        if (e instanceof VcpuExit.Shutdown || e instanceof VcpuExit.InternalError) break;
                    }
                }
            }
        }
        assertTrue(counts[ExitReason.SHUTDOWN] > 0 && counts[ExitReason.INTERNAL_ERROR] > 0,
                "random code hits both invalid and unsupported instructions");
    }
}
