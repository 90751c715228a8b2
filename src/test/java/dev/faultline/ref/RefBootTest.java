package dev.faultline.ref;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.hv.ExitReason;
import dev.faultline.hv.Regs;
import org.junit.jupiter.api.Test;

class RefBootTest {
    @Test
    void shouldRunAnAssemblyGuestToPortDoneWithItsRegisters() {
        byte[] img = Toolchain.assemble("""
                .text
                mov $40, %eax
                add $2, %rax
                mov %rax, %rbx
                xor %ecx, %ecx
                1: add $3, %rcx
                dec %rbx
                jnz 1b
                mov $'h', %al
                out %al, $0xe9
                mov $'i', %al
                out %al, $0xe9
                mov %rcx, %rax
                out %eax, $0xf4
                hlt
                """);
        try (GuestMachine m = new GuestMachine(img)) {
            GuestMachine.Result r = m.runUntilDone();
            assertEquals("hi", r.console.toString());
            assertEquals(126, r.doneCode);
            Regs regs = m.regs();
            assertEquals(126, regs.gpr[Regs.RCX]);
            assertEquals(0, regs.gpr[Regs.RBX]);
            assertEquals(ExitReason.HLT, m.vcpu().run().reason(), "after done the guest halts");
        }
    }
}
