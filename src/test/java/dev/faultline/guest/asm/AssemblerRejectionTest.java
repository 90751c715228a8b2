package dev.faultline.guest.asm;

import static dev.faultline.guest.asm.Mem.*;
import static dev.faultline.guest.asm.Reg.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** What the assembler refuses, and the messages it refuses with; plus what needs no GNU as to check. */
class AssemblerRejectionTest {
    private final Assembler a = new Assembler(0x200000);

    private static void assertMessage(String expectedPart, Throwable t) {
        assertTrue(t.getMessage().contains(expectedPart), () -> "message was: " + t.getMessage());
    }

    @Test
    void shouldRefuseOperandsOfDifferentSizes() {
        assertMessage("mov rax, ebx: operand sizes differ", assertThrows(IllegalArgumentException.class, () -> a.mov(RAX, EBX)));
        assertMessage("operand sizes differ", assertThrows(IllegalArgumentException.class, () -> a.add(EAX, m64(RBX))));
    }

    @Test
    void shouldRefuseMemoryToMemoryForms() {
        assertMessage("memory-to-memory", assertThrows(IllegalArgumentException.class, () -> a.mov(m64(RAX), m64(RBX))));
    }

    @Test
    void shouldRefuseImmediatesThatDoNotFit() {
        assertMessage("does not fit a sign-extended imm32",
                assertThrows(IllegalArgumentException.class, () -> a.add(RAX, 0x80000000L)));
        assertMessage("does not fit 8 bits", assertThrows(IllegalArgumentException.class, () -> a.mov(AL, 256)));
        assertMessage("does not fit imm8", assertThrows(IllegalArgumentException.class, () -> a.out(0x3f8, AL)));
    }

    @Test
    void shouldRefuseImpossibleAddressing() {
        assertMessage("rsp cannot be an index", assertThrows(IllegalArgumentException.class, () -> m64(RAX, RSP, 1, 0)));
        assertMessage("must be 64-bit", assertThrows(IllegalArgumentException.class, () -> m64(EAX)));
        assertMessage("scale 3", assertThrows(IllegalArgumentException.class, () -> m64(RAX, RBX, 3, 0)));
        assertMessage("needs a size", assertThrows(IllegalArgumentException.class, () -> a.inc(addr(RAX, 0))));
    }

    @Test
    void shouldRefuseALabelThatIsNeverBound() {
        Label nowhere = a.newLabel("nowhere");
        a.jmp(nowhere);
        assertMessage("label nowhere is used but never bound", assertThrows(IllegalStateException.class, a::assemble));
    }

    @Test
    void shouldRefuseALockPrefixWithoutAnInstruction() {
        a.lock();
        assertMessage("lock prefix followed by the end", assertThrows(IllegalStateException.class, a::assemble));
    }

    @Test
    void shouldRefuseVariableShiftCountsOutsideCl() {
        assertMessage("must be in cl", assertThrows(IllegalArgumentException.class, () -> a.shl(RAX, RCX)));
    }

    @Test
    void shouldResolveForwardRipRelativeLoadsAndLabelAddresses() {
        Label data = a.newLabel("data");
        a.mov(RAX, m64(data)).hlt().bind(data).dq(0x1122334455667788L);
        byte[] code = a.assemble();
        // 48 8b 05 disp32: the load ends at 7, hlt is 1 byte, so data sits 1 byte after the end.
        assertArrayEquals(new byte[] {0x48, (byte) 0x8b, 0x05, 1, 0, 0, 0, (byte) 0xf4}, java.util.Arrays.copyOf(code, 8));
        assertEquals(0x200008, a.address(data));
    }

    @Test
    void shouldUseRel32WhenAForwardBranchCannotReachWithRel8() {
        Label far = a.newLabel();
        a.jne(far);
        for (int i = 0; i < 200; i++) a.nop();
        a.bind(far).hlt();
        byte[] code = a.assemble();
        assertEquals(0x0f, code[0]);
        assertEquals((byte) 0x85, code[1]);
        assertEquals(200, code[2] & 0xff);
        assertEquals(6 + 200 + 1, code.length);
    }
}
