package dev.faultline.ref;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.ExitReason;
import dev.faultline.hv.Regs;
import dev.faultline.hv.VcpuExit;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/** Table tests of instructions whose results the manual fixes: strings, stack, control flow, system instructions. */
class RefInstructionTest {
    static GuestMachine.Result run(GuestMachine m) { return m.runUntilDone(0, 100); }

    @Test
    void shouldCopyFillCompareAndScanWithRepStringInstructionsInBothDirections() {
        byte[] img = Toolchain.assemble("""
                cld
                mov $0x300000, %edi
                mov $0x11, %al
                mov $100, %ecx
                rep stosb                      # 100 bytes of 0x11
                mov $0x300200, %edi
                movabs $0x0123456789abcdef, %rax
                mov $4, %ecx
                rep stosq
                mov $0x300200, %esi
                mov $0x300400, %edi
                mov $8, %ecx
                rep movsl                      # copy 32 bytes
                mov $0x300200, %esi
                mov $0x300400, %edi
                mov $32, %ecx
                repe cmpsb
                mov %rcx, %r8                  # 0: all equal
                mov $0x300000, %edi
                mov $0x22, %al
                mov $200, %ecx
                repne scasb                    # not found: rcx = 0
                mov %rcx, %r9
                mov $0x300000, %edi
                mov $0x11, %al
                mov $200, %ecx
                repe scasb                     # stops after the 101st byte
                mov %rcx, %r10
                std
                mov $0x30041f, %esi
                mov $0x30061f, %edi
                mov $32, %ecx
                rep movsb                      # backwards copy
                cld
                mov $0x300600, %esi
                lodsq
                mov %rax, %r11
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            Regs r = m.regs();
            assertEquals(0x1111111111111111L, m.read64(0x300000));
            assertEquals(0x11, m.mem.get(ValueLayout.JAVA_BYTE, 0x300063));
            assertEquals(0, m.mem.get(ValueLayout.JAVA_BYTE, 0x300064));
            assertEquals(0x0123456789abcdefL, m.read64(0x300418));
            assertEquals(0, r.gpr[Regs.R8]);
            assertEquals(0, r.gpr[Regs.R9]);
            assertEquals(99, r.gpr[Regs.R10]);
            assertEquals(0x0123456789abcdefL, r.gpr[Regs.R11]);
            assertEquals(0x300608, r.gpr[Regs.RSI]);
        }
    }

    @Test
    void shouldHandleTheStackCallsReturnsAndFlagsRegister() {
        byte[] img = Toolchain.assemble("""
                mov %rsp, %r15
                push $-5                       # sign-extended imm8
                pop %rax
                pushw $0x1234
                popw %bx
                call f
                mov %rax, %r8
                lea g(%rip), %rcx
                call *%rcx
                mov %rax, %r9
                stc
                pushfq
                pop %r10
                push $0x8d5
                popfq
                setc %r11b
                seto %r12b
                mov %rsp, %r13
                sub %r15, %r13
                hlt
                f: push %rbp
                mov %rsp, %rbp
                push $42
                mov -8(%rbp), %rax
                leave
                ret
                g: mov $7, %eax
                ret $0
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            Regs r = m.regs();
                        assertEquals(0x1234, r.gpr[Regs.RBX] & 0xffff);
            assertEquals(42, r.gpr[Regs.R8]);
            assertEquals(7, r.gpr[Regs.R9]);
            assertEquals(0x003, r.gpr[Regs.R10] & 0x2ff, "CF and bit 1 set, IF clear as the boot flags have it");
            assertEquals(1, r.gpr[Regs.R11] & 0xff);
            assertEquals(1, r.gpr[Regs.R12] & 0xff);
            assertEquals(0, r.gpr[Regs.R13], "every push was popped");
            assertEquals(0x46, r.rflags & 0x8d7, "flags of the final sub (zero result), not of the popf");
        }
    }

    @Test
    void shouldAnswerCpuidWithTheAdvertisedFeatures() {
        byte[] img = Toolchain.assemble("""
                xor %eax, %eax
                cpuid
                mov %ebx, %r8d
                mov %edx, %r9d
                mov %ecx, %r10d
                mov $0x80000001, %eax
                cpuid
                mov %edx, %r11d
                mov $7, %eax
                xor %ecx, %ecx
                cpuid
                mov %ebx, %r12d
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            m.vcpu().run();
            Regs r = m.regs();
            String vendor = str(r.gpr[Regs.R8]) + str(r.gpr[Regs.R9]) + str(r.gpr[Regs.R10]);
            assertEquals("FaultlineRef", vendor);
            assertEquals(1L << 29, r.gpr[Regs.R11] & (1L << 29), "long mode");
            assertEquals(1L << 20, r.gpr[Regs.R11] & (1L << 20), "NX");
            assertEquals(1 << 3, r.gpr[Regs.R12] & (1 << 3), "BMI1 (TZCNT)");
        }
    }

    static String str(long v) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 4; i++) sb.append((char) ((v >>> (8 * i)) & 0xff));
        return sb.toString();
    }

    @Test
    void shouldReadAndWriteEferFsBaseAndControlRegisters() {
        byte[] img = Toolchain.assemble("""
                mov $0xc0000080, %ecx
                rdmsr
                mov %rax, %r8
                mov $0xc0000100, %ecx
                mov $0x300000, %eax
                xor %edx, %edx
                wrmsr
                movq $99, 0x300010
                mov %fs:0x10, %r9
                mov %cr0, %r10
                mov %cr4, %r11
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            Regs r = m.regs();
            assertEquals(0xd00, r.gpr[Regs.R8], "EFER: LME, LMA, NXE");
            assertEquals(99, r.gpr[Regs.R9]);
            assertEquals(dev.faultline.guest.BootSetup.CR0, r.gpr[Regs.R10]);
            assertEquals(dev.faultline.guest.BootSetup.CR4, r.gpr[Regs.R11]);
            assertEquals(0x300000, m.vcpu().getSregs().fs().base());
        }
    }

    @Test
    void shouldTreatLockOnANonLockableInstructionAsInvalidOpcode() {
        byte[] img = Toolchain.assemble(".byte 0xf0, 0x48, 0x89, 0xc3\nhlt\n");  // lock mov %rax, %rbx
        try (GuestMachine m = new GuestMachine(img)) {
            VcpuExit e = m.vcpu().run();
            assertEquals(ExitReason.SHUTDOWN, e.reason());
            assertEquals(6, m.vcpu().lastExceptionVector());
        }
    }

    @Test
    void shouldExecuteMultiByteNopsAndPause() {
        byte[] img = Toolchain.assemble("""
                .byte 0x66, 0x90
                .byte 0x0f, 0x1f, 0x00
                .byte 0x0f, 0x1f, 0x44, 0x00, 0x00
                .byte 0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
                .byte 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
                pause
                endbr64
                mov $3, %eax
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            assertEquals(ExitReason.HLT, m.vcpu().run().reason());
            assertEquals(3, m.regs().rax());
            assertEquals(9, m.vcpu().instructionsRetired(), "eight nops and the mov, and hlt");
        }
    }

    @Test
    void shouldRunTheBenchmarkLoopRetiringFourInstructionsPerIteration() {
        RefBench.Result r = RefBench.runOnce(1000);
        assertEquals(4 * 1000 + 3, r.instructions(), "4 per iteration plus movabs, xor and out");
    }
}
