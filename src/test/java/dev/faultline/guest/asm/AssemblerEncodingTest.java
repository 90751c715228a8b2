package dev.faultline.guest.asm;

import static dev.faultline.guest.asm.Mem.*;
import static dev.faultline.guest.asm.Reg.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Encodings of a hand-written table of instructions, compared byte for byte with GNU as. */
class AssemblerEncodingTest {
    private final List<AsmCase> cases = new ArrayList<>();

    @BeforeEach
    void requireGnuAs() {
        assumeTrue(GnuAs.unavailableReason().isEmpty(), () -> "skipped: " + GnuAs.unavailableReason().orElse(""));
    }

    private void c(String gas, Consumer<Assembler> java) { cases.add(new AsmCase(gas, java)); }

    private void assertAllMatchGnuAs() throws Exception {
        List<String> bad = AsmCase.mismatches(cases);
        assertEquals(List.of(), bad, bad.size() + " of " + cases.size() + " encodings differ from GNU as");
    }

    @Test
    void shouldEncodeMovesLikeGnuAs() throws Exception {
        c("mov rax, rbx", a -> a.mov(RAX, RBX));
        c("mov r8, r15", a -> a.mov(R8, R15));
        c("mov ecx, r9d", a -> a.mov(ECX, R9D));
        c("mov dx, r10w", a -> a.mov(DX, R10W));
        c("mov al, bl", a -> a.mov(AL, BL));
        c("mov sil, dil", a -> a.mov(SIL, DIL));
        c("mov r11b, spl", a -> a.mov(R11B, SPL));
        c("mov rax, 0", a -> a.mov(RAX, 0));
        c("mov rax, -1", a -> a.mov(RAX, -1));
        c("mov rax, 0x7fffffff", a -> a.mov(RAX, 0x7fffffff));
        c("mov rax, 0x80000000", a -> a.mov(RAX, 0x80000000L));
        c("mov r12, 0x123456789abcdef0", a -> a.mov(R12, 0x123456789abcdef0L));
        c("movabs rcx, 5", a -> a.movabs(RCX, 5));
        c("mov eax, 0xffffffff", a -> a.mov(EAX, 0xffffffffL));
        c("mov r13d, 7", a -> a.mov(R13D, 7));
        c("mov cx, 0x1234", a -> a.mov(CX, 0x1234));
        c("mov dil, 0x80", a -> a.mov(DIL, 0x80));
        c("mov r15b, 1", a -> a.mov(R15B, 1));
        c("mov rax, qword ptr [rbx]", a -> a.mov(RAX, m64(RBX)));
        c("mov qword ptr [rbx], rax", a -> a.mov(m64(RBX), RAX));
        c("mov byte ptr [rsi + 1], cl", a -> a.mov(m8(RSI, 1), CL));
        c("mov word ptr [rdi - 2], ax", a -> a.mov(m16(RDI, -2), AX));
        c("mov dword ptr [rcx + 0x1000], edx", a -> a.mov(m32(RCX, 0x1000), EDX));
        c("mov qword ptr [rbx], 5", a -> a.mov(m64(RBX), 5));
        c("mov qword ptr [rbx], -5", a -> a.mov(m64(RBX), -5));
        c("mov dword ptr [rbx + 8], 0x12345678", a -> a.mov(m32(RBX, 8), 0x12345678));
        c("mov word ptr [rbx], 0xbeef", a -> a.mov(m16(RBX), 0xbeef));
        c("mov byte ptr [r9], 0xff", a -> a.mov(m8(R9), 0xff));
        c("movzx eax, bl", a -> a.movzx(EAX, BL));
        c("movzx rax, byte ptr [rsi]", a -> a.movzx(RAX, m8(RSI)));
        c("movzx r10d, word ptr [r11 + 6]", a -> a.movzx(R10D, m16(R11, 6)));
        c("movzx ax, sil", a -> a.movzx(AX, SIL));
        c("movsx rax, cl", a -> a.movsx(RAX, CL));
        c("movsx ecx, word ptr [rax]", a -> a.movsx(ECX, m16(RAX)));
        c("movsxd rax, ebx", a -> a.movsxd(RAX, EBX));
        c("movsxd r9, dword ptr [r8 + 4]", a -> a.movsxd(R9, m32(R8, 4)));
        c("lea rax, [rbx + rcx*4 + 8]", a -> a.lea(RAX, addr(RBX, RCX, 4, 8)));
        c("lea r8d, [rax + 1]", a -> a.lea(R8D, addr(RAX, 1)));
        c("lea rsp, [rsp - 8]", a -> a.lea(RSP, addr(RSP, -8)));
        c("xchg rax, rcx", a -> a.xchg(RAX, RCX));
        c("xchg rcx, rax", a -> a.xchg(RCX, RAX));
        c("xchg eax, eax", a -> a.xchg(EAX, EAX));
        c("xchg rax, rax", a -> a.xchg(RAX, RAX));
        c("xchg ax, r9w", a -> a.xchg(AX, R9W));
        c("xchg rbx, rdx", a -> a.xchg(RBX, RDX));
        c("xchg al, bl", a -> a.xchg(AL, BL));
        c("xchg qword ptr [rdi], rsi", a -> a.xchg(m64(RDI), RSI));
        assertAllMatchGnuAs();
    }

    @Test
    void shouldEncodeAddressingModeQuirksLikeGnuAs() throws Exception {
        c("mov rax, qword ptr [rsp]", a -> a.mov(RAX, m64(RSP)));
        c("mov rax, qword ptr [r12]", a -> a.mov(RAX, m64(R12)));
        c("mov rax, qword ptr [rbp]", a -> a.mov(RAX, m64(RBP)));
        c("mov rax, qword ptr [r13]", a -> a.mov(RAX, m64(R13)));
        c("mov rax, qword ptr [rsp + 8]", a -> a.mov(RAX, m64(RSP, 8)));
        c("mov rax, qword ptr [r12 + 0x100]", a -> a.mov(RAX, m64(R12, 0x100)));
        c("mov rax, qword ptr [rbp - 8]", a -> a.mov(RAX, m64(RBP, -8)));
        c("mov rax, qword ptr [r13 + 127]", a -> a.mov(RAX, m64(R13, 127)));
        c("mov rax, qword ptr [r13 + 128]", a -> a.mov(RAX, m64(R13, 128)));
        c("mov rax, qword ptr [rbx - 128]", a -> a.mov(RAX, m64(RBX, -128)));
        c("mov rax, qword ptr [rbx - 129]", a -> a.mov(RAX, m64(RBX, -129)));
        c("mov rax, qword ptr [rbx + rcx*1]", a -> a.mov(RAX, m64(RBX, RCX, 1, 0)));
        c("mov rax, qword ptr [rbp + rcx*2]", a -> a.mov(RAX, m64(RBP, RCX, 2, 0)));
        c("mov rax, qword ptr [r13 + r12*8]", a -> a.mov(RAX, m64(R13, R12, 8, 0)));
        c("mov rax, qword ptr [rsp + r12*4 + 0x40]", a -> a.mov(RAX, m64(RSP, R12, 4, 0x40)));
        c("mov r15, qword ptr [r12 + r15*8 - 0x12345]", a -> a.mov(R15, m64(R12, R15, 8, -0x12345)));
        c("mov rax, qword ptr [rcx*8 + 0x100]", a -> a.mov(RAX, m64(null, RCX, 8, 0x100)));
        c("mov rax, qword ptr [r9*2]", a -> a.mov(RAX, m64(null, R9, 2, 0)));
        c("mov rax, qword ptr [0x1000]", a -> a.mov(RAX, abs(64, 0x1000)));
        c("mov dword ptr [0xf0], 1", a -> a.mov(abs(32, 0xf0), 1));
        c("mov rax, qword ptr [rip + 0x10]", a -> a.mov(RAX, rip(64, 0x10)));
        c("mov rax, qword ptr [rip - 7]", a -> a.mov(RAX, rip(64, -7)));
        c("lea rsi, [rip + 0x100]", a -> a.lea(RSI, Mem.rip(0, 0x100)));
        c("mov qword ptr [rip + 0x20], 0x1234", a -> a.mov(rip(64, 0x20), 0x1234));
        c("mov byte ptr [rip], 1", a -> a.mov(rip(8, 0), 1));
        c("add r8, qword ptr [rip + 8]", a -> a.add(R8, rip(64, 8)));
        assertAllMatchGnuAs();
    }

    @Test
    void shouldEncodeArithmeticAndLogicLikeGnuAs() throws Exception {
        c("add rax, rbx", a -> a.add(RAX, RBX));
        c("add r8d, r9d", a -> a.add(R8D, R9D));
        c("sub cx, dx", a -> a.sub(CX, DX));
        c("and al, r10b", a -> a.and(AL, R10B));
        c("or rax, qword ptr [rbx]", a -> a.or(RAX, m64(RBX)));
        c("xor qword ptr [rbx + 8], rax", a -> a.xor(m64(RBX, 8), RAX));
        c("cmp rdi, rsi", a -> a.cmp(RDI, RSI));
        c("cmp byte ptr [rax], dl", a -> a.cmp(m8(RAX), DL));
        c("adc rax, rdx", a -> a.adc(RAX, RDX));
        c("sbb eax, 1", a -> a.sbb(EAX, 1));
        c("add rax, 1", a -> a.add(RAX, 1));
        c("add rax, 127", a -> a.add(RAX, 127));
        c("add rax, 128", a -> a.add(RAX, 128));
        c("add rbx, 128", a -> a.add(RBX, 128));
        c("add rbx, -128", a -> a.add(RBX, -128));
        c("add rax, 4096", a -> a.add(RAX, 4096));
        c("add eax, 0xffffffff", a -> a.add(EAX, 0xffffffffL));
        c("add ax, 1000", a -> a.add(AX, 1000));
        c("add ax, 5", a -> a.add(AX, 5));
        c("add cx, 1000", a -> a.add(CX, 1000));
        c("add al, 5", a -> a.add(AL, 5));
        c("add bl, 200", a -> a.add(BL, 200));
        c("and rax, -4096", a -> a.and(RAX, -4096));
        c("and r10, 0x7fffffff", a -> a.and(R10, 0x7fffffff));
        c("or dil, 1", a -> a.or(DIL, 1));
        c("xor r15d, r15d", a -> a.xor(R15D, R15D));
        c("cmp rcx, 0x10000", a -> a.cmp(RCX, 0x10000));
        c("cmp qword ptr [rsp + 8], 0", a -> a.cmp(m64(RSP, 8), 0));
        c("cmp dword ptr [rbx], 0x12345", a -> a.cmp(m32(RBX), 0x12345));
        c("sub byte ptr [rbx], 1", a -> a.sub(m8(RBX), 1));
        c("test rax, rbx", a -> a.test(RAX, RBX));
        c("test r9b, r9b", a -> a.test(R9B, R9B));
        c("test qword ptr [rax], rcx", a -> a.test(m64(RAX), RCX));
        c("test al, 1", a -> a.test(AL, 1));
        c("test eax, 0x100", a -> a.test(EAX, 0x100));
        c("test rax, 1", a -> a.test(RAX, 1));
        c("test rbx, 1", a -> a.test(RBX, 1));
        c("test cl, 0x80", a -> a.test(CL, 0x80));
        c("test ax, 3", a -> a.test(AX, 3));
        c("test dword ptr [rdi], 7", a -> a.test(m32(RDI), 7));
        c("inc rax", a -> a.inc(RAX));
        c("dec r12d", a -> a.dec(R12D));
        c("inc byte ptr [rbx]", a -> a.inc(m8(RBX)));
        c("dec qword ptr [r13]", a -> a.dec(m64(R13)));
        c("neg rcx", a -> a.neg(RCX));
        c("not r8", a -> a.not(R8));
        c("not word ptr [rax]", a -> a.not(m16(RAX)));
        c("mul rbx", a -> a.mul(RBX));
        c("mul byte ptr [rsi]", a -> a.mul(m8(RSI)));
        c("imul rcx", a -> a.imul(RCX));
        c("div r9", a -> a.div(R9));
        c("div ecx", a -> a.div(ECX));
        c("idiv qword ptr [rsp]", a -> a.idiv(m64(RSP)));
        c("imul rax, rbx", a -> a.imul(RAX, RBX));
        c("imul r9d, dword ptr [r10]", a -> a.imul(R9D, m32(R10)));
        c("imul rax, rbx, 5", a -> a.imul(RAX, RBX, 5));
        c("imul rax, rax, 1103515245", a -> a.imul(RAX, RAX, 1103515245));
        c("imul cx, dx, -300", a -> a.imul(CX, DX, -300));
        c("imul r11, qword ptr [rbx + 8], 100", a -> a.imul(R11, m64(RBX, 8), 100));
        c("cqo", Assembler::cqo);
        c("cdq", Assembler::cdq);
        c("shl rax, 12", a -> a.shl(RAX, 12));
        c("shl rax, 1", a -> a.shl(RAX, 1));
        c("shr r10d, 3", a -> a.shr(R10D, 3));
        c("sar cx, 15", a -> a.sar(CX, 15));
        c("rol bl, 4", a -> a.rol(BL, 4));
        c("ror r11, 32", a -> a.ror(R11, 32));
        c("shl qword ptr [rax], 2", a -> a.shl(m64(RAX), 2));
        c("shr byte ptr [rax], 1", a -> a.shr(m8(RAX), 1));
        c("shl rdx, cl", a -> a.shl(RDX, CL));
        c("sar r8d, cl", a -> a.sar(R8D, CL));
        c("rol qword ptr [rbx], cl", a -> a.rol(m64(RBX), CL));
        c("sete al", a -> a.set(Cond.E, AL));
        c("setb sil", a -> a.set(Cond.B, SIL));
        c("setg byte ptr [rdi]", a -> a.set(Cond.G, m8(RDI)));
        c("cmovne rax, rbx", a -> a.cmov(Cond.NE, RAX, RBX));
        c("cmovl r8d, dword ptr [r9]", a -> a.cmov(Cond.L, R8D, m32(R9)));
        assertAllMatchGnuAs();
    }

    @Test
    void shouldEncodeStackIoAtomicsAndSystemInstructionsLikeGnuAs() throws Exception {
        c("push rax", a -> a.push(RAX));
        c("push r15", a -> a.push(R15));
        c("pop rbp", a -> a.pop(RBP));
        c("pop r12", a -> a.pop(R12));
        c("push qword ptr [rbx + 8]", a -> a.push(m64(RBX, 8)));
        c("pop qword ptr [rsp + 16]", a -> a.pop(m64(RSP, 16)));
        c("push 1", a -> a.push(1));
        c("push -1", a -> a.push(-1));
        c("push 0x1000", a -> a.push(0x1000));
        c("ret", Assembler::ret);
        c("jmp rax", a -> a.jmp(RAX));
        c("jmp r11", a -> a.jmp(R11));
        c("call rbx", a -> a.call(RBX));
        c("call qword ptr [rax + 8]", a -> a.call(m64(RAX, 8)));
        c("jmp qword ptr [rip + 0]", a -> a.jmp(rip(64, 0)));
        c("in al, 0x60", a -> a.in(AL, 0x60));
        c("in ax, 0x60", a -> a.in(AX, 0x60));
        c("in eax, 0xf0", a -> a.in(EAX, 0xf0));
        c("in al, dx", a -> a.in(AL, DX));
        c("in ax, dx", a -> a.in(AX, DX));
        c("in eax, dx", a -> a.in(EAX, DX));
        c("out 0xe9, al", a -> a.out(0xe9, AL));
        c("out 0xf4, ax", a -> a.out(0xf4, AX));
        c("out 0xf4, eax", a -> a.out(0xf4, EAX));
        c("out dx, al", a -> a.out(DX, AL));
        c("out dx, ax", a -> a.out(DX, AX));
        c("out dx, eax", a -> a.out(DX, EAX));
        c("lock xadd qword ptr [rdi], rax", a -> a.lock().xadd(m64(RDI), RAX));
        c("lock xadd dword ptr [r8 + 4], r9d", a -> a.lock().xadd(m32(R8, 4), R9D));
        c("lock xadd word ptr [rax], bx", a -> a.lock().xadd(m16(RAX), BX));
        c("lock xadd byte ptr [rax], bl", a -> a.lock().xadd(m8(RAX), BL));
        c("xadd rax, rbx", a -> a.xadd(RAX, RBX));
        c("lock cmpxchg qword ptr [rbx], rcx", a -> a.lock().cmpxchg(m64(RBX), RCX));
        c("lock cmpxchg byte ptr [rbx], sil", a -> a.lock().cmpxchg(m8(RBX), SIL));
        c("lock add qword ptr [rbx], 1", a -> a.lock().add(m64(RBX), 1));
        c("lock inc dword ptr [rbx]", a -> a.lock().inc(m32(RBX)));
        c("rep stosb", a -> a.rep().stosb());
        c("rep stosq", a -> a.rep().stosq());
        c("rep stosw", a -> a.rep().stosw());
        c("rep stosd", a -> a.rep().stosd());
        c("rep movsb", a -> a.rep().movsb());
        c("rep movsq", a -> a.rep().movsq());
        c("stosq", Assembler::stosq);
        c("hlt", Assembler::hlt);
        c("nop", Assembler::nop);
        c("pause", Assembler::pause);
        c("cpuid", Assembler::cpuid);
        c("vmcall", Assembler::vmcall);
        c("mov cr3, rax", a -> a.movCr3(RAX));
        c("mov cr3, rdi", a -> a.movCr3(RDI));
        c("vmmcall", Assembler::vmmcall);
        c("rdtsc", Assembler::rdtsc);
        c("mfence", Assembler::mfence);
        c("ud2", Assembler::ud2);
        c("int3", Assembler::int3);
        assertAllMatchGnuAs();
    }

    @Test
    void shouldRelaxBranchesToLabelsLikeGnuAs() throws Exception {
        StringBuilder gas = new StringBuilder();
        Assembler a = new Assembler(0x200000);
        Label top = a.newLabel("top"), f127 = a.newLabel("f127"), f128 = a.newLabel("f128"), back128 = a.newLabel("back128"),
                back129 = a.newLabel("back129"), data = a.newLabel("data"), fn = a.newLabel("fn"), chain = a.newLabel("chain");
        gas.append("top:\n");
        a.bind(top);
        gas.append("jmp f127\n");
        a.jmp(f127);
        nops(gas, a, 127);
        gas.append("f127:\njne f128\n");
        a.bind(f127).jne(f128);
        nops(gas, a, 128);
        gas.append("f128:\nback128:\n");
        a.bind(f128).bind(back128);
        nops(gas, a, 126);
        gas.append("jmp back128\n");
        a.jmp(back128);
        gas.append("back129:\n");
        a.bind(back129);
        nops(gas, a, 127);
        gas.append("jb back129\ncall fn\nlea rax, [rip + data]\nmov qword ptr [rip + data], 0x1234\nmov ecx, dword ptr [rip + top]\n");
        a.jb(back129).call(fn).lea(RAX, addr(data)).mov(m64(data), 0x1234).mov(ECX, m32(top));
        // A chain: the first jump reaches only if the later ones stay short.
        gas.append("jmp chain\n");
        a.jmp(chain);
        for (int i = 0; i < 40; i++) {
            gas.append("je chain\n");
            a.je(chain);
        }
        nops(gas, a, 40);
        gas.append("chain:\nfn:\nret\ncall top\njmp top\ndata:\n.quad 0\n");
        a.bind(chain).bind(fn).ret().call(top).jmp(top).bind(data).dq(0);
        byte[] ours = a.assemble();
        byte[] theirs = GnuAs.assemble(gas.toString());
        assertArrayEquals(theirs, ours, () -> "ours " + GnuAs.hex(ours, 0, ours.length) + "\nas   " + GnuAs.hex(theirs, 0, theirs.length));
        assertEquals(0x200000 + ours.length - 8, a.address(data));
    }

    private static void nops(StringBuilder gas, Assembler a, int n) {
        for (int i = 0; i < n; i++) {
            gas.append("nop\n");
            a.nop();
        }
    }
}
