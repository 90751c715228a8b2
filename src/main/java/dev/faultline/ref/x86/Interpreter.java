package dev.faultline.ref.x86;

import static dev.faultline.ref.x86.Op.*;

import dev.faultline.hv.Sregs;
import dev.faultline.ref.ExitSignal;
import dev.faultline.ref.RefMemslot;
import dev.faultline.ref.RefVcpu;
import dev.faultline.ref.mmu.Mmu;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The instruction emulator: executes decoded instructions of the guest (64-bit mode, CPL 0) until
 * the vCPU has an exit.
 *
 * <h2>Loop</h2>
 * {@link #execute()} enters the code page under RIP ({@link #runPage()}): instructions are looked up
 * by page offset in a {@link CodePage} (decoded on first use) and executed by one switch over
 * {@link Insn#op}. The inner loop runs while RIP stays in that page; it leaves when RIP moves to
 * another page, when an instruction asked to stop (an exit that completes the instruction: port I/O,
 * MMIO write, HLT; a write to the page being executed), or every {@value #BRANCH_BUDGET} taken
 * branches so that kicks and memslot changes are seen.
 *
 * <p>An exit that cannot let the instruction complete (an MMIO read, a guest exception, an
 * emulation failure) unwinds with {@link ExitSignal} from wherever it happened; RIP goes back to
 * the start of the instruction and the instruction did not retire. Instructions change
 * architectural state only after every access that can fault has been done, except for memory
 * writes of string instructions, which KVM too performs per iteration.
 *
 * <p>Threading: owned by its vCPU's thread. Locked instructions use atomic memory operations, so
 * they are atomic across vCPUs.
 */
public final class Interpreter extends CpuState {
    static final int BRANCH_BUDGET = 1 << 14;
    /** Iterations of a rep-prefixed instruction before it yields to let events through. */
    static final int REP_CHUNK = 1 << 16;

    private final RefVcpu vcpu;
    public final Mmu mmu;
    private final Decoder decoder = new Decoder();
    private final byte[] fetchBuf = new byte[32];
    private final CodePage[] codeCache = new CodePage[256];
    private final int[] cpuidOut = new int[4];

    /** Instructions retired since the vCPU was created. */
    public long retired;
    /** Start of the instruction being executed (where RIP goes back to when it cannot complete). */
    public long insnStart;
    /** The virtual page the inner loop executes; -1 makes it stop after the current instruction. */
    private long curPage = -1;
    /** Guest-physical page being executed (self-modifying code check). */
    private long curCodeGpa = -1;
    private int branchBudget;
    public long tsc;

    public Interpreter(dev.faultline.ref.RefVm vm, RefVcpu vcpu) {
        this.vcpu = vcpu;
        this.mmu = new Mmu(vm, vcpu, this);
    }

    /** Stop after the current instruction (an exit is prepared, or the code under RIP changed). */
    public void requestStop() { curPage = -1; }

    /** Guest-physical page of the code being executed, or -1. */
    public long currentCodePage() { return curCodeGpa; }

    /** Drops every decoded page (memslots changed). */
    public void flushCode() {
        java.util.Arrays.fill(codeCache, null);
        curCodeGpa = -1;
    }

    /** Runs until the vCPU has an exit (checked by the vCPU after each page run). */
    public void execute() {
        while (!vcpu.exitReady()) {
            if (vcpu.pollEvents()) return;
            try {
                runPage();
            } catch (ExitSignal e) {
                // The instruction is abandoned: an exit is prepared, or (no exit) it is simply retried,
                // as after an asynchronous page fault was resolved in the background.
                if (rip != insnStart) retired--;
                rip = insnStart;
                curPage = -1;
            }
        }
    }

    // ---------------------------------------------------------------- code fetch

    private CodePage codePage(long va) {
        long gpa = mmu.translateExec(va);
        RefMemslot slot = mmu.lastSlot;
        if (slot == null) {
            vcpu.emulationFailure("instruction fetch from gpa 0x" + Long.toHexString(gpa) + " outside every memslot");
        }
        long gpaPage = gpa & ~0xfffL;
        int idx = (int) (gpaPage >>> 12) & (codeCache.length - 1);
        int pageIndex = slot.pageIndex(gpaPage);
        CodePage cp = codeCache[idx];
        if (cp == null || cp.gpa != gpaPage || cp.slot != slot || cp.version != slot.codeVersion[pageIndex]
                || cp.segment != mmu.lastExecSegment) {
            vcpu.markCode(slot, pageIndex, gpaPage);
            cp = new CodePage(gpaPage, slot, pageIndex, slot.codeVersion[pageIndex], mmu.lastExecSegment, mmu.lastExecHost);
            codeCache[idx] = cp;
        }
        curCodeGpa = gpaPage;
        return cp;
    }

    private Insn decodeAt(CodePage cp, long ip) {
        int off = (int) ip & 0xfff;
        int n = Math.min(Decoder.MAX_LEN + 1, 4096 - off);
        MemorySegment.copy(cp.segment, ValueLayout.JAVA_BYTE, cp.hostOffset + off, fetchBuf, 0, n);
        Insn in = new Insn();
        if (decoder.decode(fetchBuf, n, in) == Decoder.NEED_MORE) {
            long gpa2 = mmu.translateExec((ip | 0xfff) + 1);
            RefMemslot s2 = mmu.lastSlot;
            if (s2 == null) {
                vcpu.emulationFailure("instruction fetch from gpa 0x" + Long.toHexString(gpa2) + " outside every memslot");
            }
            int rest = Decoder.MAX_LEN + 1 - n;
            MemorySegment.copy(mmu.lastExecSegment, ValueLayout.JAVA_BYTE, mmu.lastExecHost + (gpa2 & 0xfff), fetchBuf, n, rest);
            decoder.decode(fetchBuf, Decoder.MAX_LEN + 1, in);
            in.crossesPage = true;
            return in;  // not cached: it depends on two pages
        }
        cp.slot.addCodeLines(cp.pageIndex, off, Math.max(in.len, 1));
        cp.insns[off] = in;
        return in;
    }

    // ---------------------------------------------------------------- operands

    /** Effective address with the FS/GS base applied. */
    private long ea(Insn in) {
        long a = r[in.base] + (r[in.index] << in.scale) + in.disp;
        if (in.ripRel) a += rip;
        if (in.addr32) a &= 0xffffffffL;
        if (in.seg != 0) a += in.seg == 4 ? fsBase : gsBase;
        return a;
    }

    private long eaNoSeg(Insn in) {
        long a = r[in.base] + (r[in.index] << in.scale) + in.disp;
        if (in.ripRel) a += rip;
        if (in.addr32) a &= 0xffffffffL;
        return a;
    }

    private long readRm(Insn in, int size) {
        return in.mem ? mmu.read(ea(in), size) : getReg(size, in.rm);
    }

    private void push(int size, long v) {
        long sp = r[4] - size;
        mmu.write(sp, size, v);
        r[4] = sp;
    }

    private long pop(int size) {
        long v = mmu.read(r[4], size);
        r[4] += size;
        return v;
    }

    private void branch(long target) {
        rip = target;
        if (--branchBudget < 0) curPage = -1;
    }

    // ---------------------------------------------------------------- arithmetic with lazy flags

    /** The eight ALU operations on zero-extended operands; returns the zero-extended result. */
    private long alu(int sub, int size, long a, long b) {
        long m = mask(size);
        long res;
        switch (sub) {
            case SUB_ADD -> { res = (a + b) & m; setLazy(F_ADD, size, a, b, res); }
            case SUB_OR -> { res = a | b; setLazy(F_LOGIC, size, a, b, res); }
            case SUB_ADC -> {
                long c = cf() ? 1 : 0;
                res = (a + b + c) & m; fcarry = c; setLazy(F_ADC, size, a, b, res);
            }
            case SUB_SBB -> {
                long c = cf() ? 1 : 0;
                res = (a - b - c) & m; fcarry = c; setLazy(F_SBB, size, a, b, res);
            }
            case SUB_AND -> { res = a & b; setLazy(F_LOGIC, size, a, b, res); }
            case SUB_XOR -> { res = a ^ b; setLazy(F_LOGIC, size, a, b, res); }
            default -> { res = (a - b) & m; setLazy(F_SUB, size, a, b, res); }  // SUB, CMP
        }
        return res;
    }

    private long incDec(int sub, int size, long a) {
        fcarry = cf() ? 1 : 0;
        long res;
        if (sub == 0) { res = (a + 1) & mask(size); setLazy(F_INC, size, a, 1, res); }
        else { res = (a - 1) & mask(size); setLazy(F_DEC, size, a, 1, res); }
        return res;
    }

    // ---------------------------------------------------------------- the loop

    private void runPage() {
        long va = rip;
        insnStart = va;
        CodePage cp = codePage(va);
        Insn[] insns = cp.insns;
        curPage = va & ~0xfffL;
        branchBudget = BRANCH_BUDGET;
        long[] r = this.r;
        for (;;) {
            long ip = rip;
            if ((ip & ~0xfffL) != curPage) return;
            insnStart = ip;
            Insn in = insns[(int) ip & 0xfff];
            if (in == null) in = decodeAt(cp, ip);
            rip = ip + in.len;
            retired++;
            switch (in.op) {
                case ALU_RR -> {
                    int s = in.size;
                    long res = alu(in.sub, s, getReg(s, in.rm), getReg(s, in.reg));
                    if (in.sub != SUB_CMP) setReg(s, in.rm, res);
                }
                case ALU_RI -> {
                    int s = in.size;
                    long res = alu(in.sub, s, getReg(s, in.rm), in.imm);
                    if (in.sub != SUB_CMP) setReg(s, in.rm, res);
                }
                case ALU_RM -> {
                    int s = in.size;
                    long b = mmu.read(ea(in), s);
                    long res = alu(in.sub, s, getReg(s, in.reg), b);
                    if (in.sub != SUB_CMP) setReg(s, in.reg, res);
                }
                case ALU_MR, ALU_MI -> aluMem(in);
                case MOV_RR -> setReg(in.size, in.rm, getReg(in.size, in.reg));
                case MOV_RI -> setReg(in.size, in.rm, in.imm);
                case LOAD -> {
                    int s = in.size;
                    long v = mmu.read(ea(in), s);
                    if (s == 8) r[in.reg] = v; else setReg(s, in.reg, v);
                }
                case STORE -> mmu.write(ea(in), in.size, getReg(in.size, in.reg));
                case STORE_I -> mmu.write(ea(in), in.size, in.imm);
                case MOVZX -> setReg(in.size, in.reg, readRm(in, in.size2));
                case MOVSX -> setReg(in.size, in.reg, sext(readRm(in, in.size2), in.size2) & mask(in.size));
                case LEA -> setReg(in.size, in.reg, eaNoSeg(in));
                case PUSH_R -> push(in.size, getReg(in.size, in.reg));
                case POP_R -> { long v = pop(in.size); setReg(in.size, in.reg, v); }
                case PUSH_I -> push(in.size, in.imm);
                case PUSH_M -> { long v = mmu.read(ea(in), in.size); push(in.size, v); }
                case POP_M -> {
                    long v = mmu.read(r[4], in.size);
                    long old = r[4];
                    r[4] = old + in.size;
                    try {
                        mmu.write(ea(in), in.size, v);
                    } catch (ExitSignal e) {
                        r[4] = old;
                        throw e;
                    }
                }
                case JCC -> { if (cond(in.sub)) branch(rip + in.imm); }
                case JMP -> branch(rip + in.imm);
                case CALL -> { push(8, rip); branch(rip + in.imm); }
                case RET -> { long t = pop(8); r[4] += in.imm; branch(t); }
                case JMP_IND -> branch(readRm(in, 8));
                case CALL_IND -> { long t = readRm(in, 8); push(8, rip); branch(t); }
                case SETCC -> {
                    long v = cond(in.sub) ? 1 : 0;
                    if (in.mem) mmu.write(ea(in), 1, v); else setReg(1, in.rm, v);
                }
                case CMOVCC -> {
                    long v = readRm(in, in.size);
                    if (cond(in.sub)) setReg(in.size, in.reg, v);
                    else if (in.size == 4) r[in.reg] &= 0xffffffffL;
                }
                case TEST_R -> {
                    int s = in.size;
                    long a = readRm(in, s);
                    setLazy(F_LOGIC, s, a, 0, a & getReg(s, in.reg));
                }
                case TEST_I -> {
                    long a = readRm(in, in.size);
                    setLazy(F_LOGIC, in.size, a, 0, a & in.imm);
                }
                case INC_DEC -> {
                    if (in.mem) aluMem(in);
                    else setReg(in.size, in.rm, incDec(in.sub, in.size, getReg(in.size, in.rm)));
                }
                case XCHG_RR -> {
                    int s = in.size;
                    long a = getReg(s, in.reg), b = getReg(s, in.rm);
                    setReg(s, in.reg, b);
                    setReg(s, in.rm, a);
                }
                case NOP -> { }
                default -> slowOp(in);
            }
        }
    }

    // ---------------------------------------------------------------- less frequent operations

    private void slowOp(Insn in) {
        switch (in.op) {
            case NOT, NEG, XCHG, CMPXCHG, XADD -> aluMem(in);
            case SHIFT -> shiftOp(in);
            case SHLD, SHRD -> shiftDouble(in);
            case MUL1 -> mul1(in);
            case DIV -> div(in);
            case IMUL2 -> setReg(in.size, in.reg, imul(in.size, getReg(in.size, in.reg), readRm(in, in.size)));
            case IMUL3 -> setReg(in.size, in.reg, imul(in.size, readRm(in, in.size), in.imm & mask(in.size)));
            case CONV_A -> {
                switch (in.size) {
                    case 2 -> setReg(2, 0, (byte) r[0]);
                    case 4 -> setReg(4, 0, (short) r[0]);
                    default -> r[0] = (int) r[0];
                }
            }
            case CONV_D -> {
                int s = in.size;
                long sign = (getReg(s, 0) & signBit(s)) != 0 ? -1L : 0;
                setReg(s, 2, sign);
            }
            case BSF, BSR, TZCNT, LZCNT, POPCNT -> bitScan(in);
            case BSWAP -> {
                if (in.size == 8) r[in.reg] = Long.reverseBytes(r[in.reg]);
                else r[in.reg] = Integer.reverseBytes((int) r[in.reg]) & 0xffffffffL;
            }
            case BT -> bitTest(in);
            case STRING -> string(in);
            case HLT -> vcpu.halt();
            case IN -> vcpu.portIn(in.imm >= 0 ? (int) in.imm : (int) r[2] & 0xffff, in.size);
            case OUT -> vcpu.portOut(in.imm >= 0 ? (int) in.imm : (int) r[2] & 0xffff, in.size, getReg(in.size, 0));
            case VMCALL -> vcpu.hypercall();
            case CPUID -> {
                Cpuid.query((int) r[0], (int) r[1], vcpu.id(), vcpu.privateMemory(), cpuidOut);
                r[0] = cpuidOut[0] & 0xffffffffL;
                r[3] = cpuidOut[1] & 0xffffffffL;
                r[1] = cpuidOut[2] & 0xffffffffL;
                r[2] = cpuidOut[3] & 0xffffffffL;
            }
            case RDTSC -> {
                long t = tsc + retired;
                r[0] = t & 0xffffffffL;
                r[2] = t >>> 32;
            }
            case RDMSR -> {
                long v = vcpu.readMsr((int) r[1]);
                r[0] = v & 0xffffffffL;
                r[2] = v >>> 32;
            }
            case WRMSR -> vcpu.writeMsr((int) r[1], (r[2] << 32) | (r[0] & 0xffffffffL));
            case MOV_FROM_CR -> r[in.rm] = switch (in.reg) {
                case 0 -> cr0;
                case 2 -> cr2;
                case 3 -> cr3;
                case 4 -> cr4;
                default -> cr8;
            };
            case MOV_TO_CR -> vcpu.writeCr(in.reg, r[in.rm]);
            case INVLPG -> mmu.flush();
            case LGDT, LIDT -> {
                long a = ea(in);
                long limit = mmu.read(a, 2);
                long base = mmu.read(a + 2, 8);
                if (in.op == LGDT) { gdtBase = base; gdtLimit = (int) limit; }
                else { idtBase = base; idtLimit = (int) limit; }
            }
            case SGDT, SIDT -> {
                long a = ea(in);
                boolean g = in.op == SGDT;
                mmu.write(a + 2, 8, g ? gdtBase : idtBase);
                mmu.write(a, 2, g ? gdtLimit : idtLimit);
            }
            case FLAGOP -> {
                materialiseFlags();
                switch (in.sub) {
                    case FL_CLC -> eflags &= ~CF;
                    case FL_STC -> eflags |= CF;
                    case FL_CMC -> eflags ^= CF;
                    case FL_CLD -> eflags &= ~DF;
                    case FL_STD -> eflags |= DF;
                    case FL_CLI -> eflags &= ~IF;
                    default -> eflags |= IF;
                }
            }
            case PUSHF -> push(in.size, rflags() & ~((1L << 16) | (1L << 17)));
            case POPF -> {
                long v = pop(in.size);
                if (in.size == 2) v = (rflags() & ~0xffffL) | v;
                long keep = rflags() & ~WRITABLE;
                setRflags((v & WRITABLE) | keep);
            }
            case LAHF -> setReg(1, 20, (rflags() & (SF | ZF | AF | PF | CF)) | 2);
            case SAHF -> {
                materialiseFlags();
                long ah = (r[0] >>> 8) & (SF | ZF | AF | PF | CF);
                eflags = (eflags & ~(SF | ZF | AF | PF | CF)) | ah;
            }
            case LEAVE -> {
                long v = mmu.read(r[5], 8);
                r[4] = r[5] + 8;
                r[5] = v;
            }
            case LOOP -> {
                long mask = in.addr32 ? 0xffffffffL : -1L;
                long c = r[1] & mask;
                boolean take;
                if (in.sub == 3) {
                    take = c == 0;
                } else {
                    c = (c - 1) & mask;
                    r[1] = c;
                    take = c != 0 && (in.sub == 2 || zf() == (in.sub == 1));
                }
                if (take) branch(rip + in.imm);
            }
            case EXCEPTION -> vcpu.raiseException((int) in.imm, 0, insnStart);
            case UNSUPPORTED -> vcpu.unsupportedInstruction(in);
            default -> vcpu.emulationFailure("operation " + in.op + " has no implementation");
        }
    }

    // ---------------------------------------------------------------- read-modify-write on memory

    /**
     * ALU/INC/DEC/NOT/NEG on a memory destination, XCHG, CMPXCHG and XADD (memory or register). With
     * LOCK (or XCHG on memory) the update is a compare-and-swap loop on the guest page, atomic across
     * vCPUs.
     */
    private void aluMem(Insn in) {
        int s = in.size;
        if (!in.mem) {  // register forms of NOT/NEG/CMPXCHG/XADD
            long d = getReg(s, in.rm);
            switch (in.op) {
                case NOT -> setReg(s, in.rm, ~d & mask(s));
                case NEG -> setReg(s, in.rm, alu(SUB_SUB, s, 0, d));
                case XADD -> {
                    long src = getReg(s, in.reg);
                    long sum = alu(SUB_ADD, s, d, src);
                    setReg(s, in.reg, d);
                    setReg(s, in.rm, sum);
                }
                default -> {  // CMPXCHG
                    long acc = getReg(s, 0);
                    alu(SUB_CMP, s, acc, d);
                    if (acc == d) setReg(s, in.rm, getReg(s, in.reg));
                    else setReg(s, 0, d);
                }
            }
            return;
        }
        long addr = ea(in);
        boolean atomic = (in.lock || in.op == XCHG) && (addr & 0xfff) + s <= 4096;
        if (atomic) {
            long off = mmu.hostFor(addr, Mmu.ACC_WRITE, s);
            MemorySegment seg = mmu.lastSegment;
            if (seg != null) {
                for (;;) {
                    long old = Mmu.atomicLoad(seg, off, s);
                    long nw = rmwResult(in, old);
                    if (in.op == CMPXCHG && old != getReg(s, 0)) {
                        // Failed compare: hardware still writes the old value back (atomically).
                        if (!Mmu.cas(seg, off, s, old, old)) continue;
                        setReg(s, 0, old);
                        return;
                    }
                    if (Mmu.cas(seg, off, s, old, nw)) {
                        rmwRegisters(in, old);
                        return;
                    }
                }
            }
        }
        long old = mmu.read(addr, s);
        long nw = rmwResult(in, old);
        if (in.op == CMPXCHG && old != getReg(s, 0)) {
            mmu.write(addr, s, old);
            setReg(s, 0, old);
            return;
        }
        if (in.op != ALU_MR && in.op != ALU_MI || in.sub != SUB_CMP) mmu.write(addr, s, nw);
        rmwRegisters(in, old);
    }

    /** The new memory value of a read-modify-write, with flags. */
    private long rmwResult(Insn in, long old) {
        int s = in.size;
        return switch (in.op) {
            case ALU_MR -> alu(in.sub, s, old, getReg(s, in.reg));
            case ALU_MI -> alu(in.sub, s, old, in.imm);
            case INC_DEC -> incDec(in.sub, s, old);
            case NOT -> ~old & mask(s);
            case NEG -> alu(SUB_SUB, s, 0, old);
            case XCHG -> getReg(s, in.reg);
            case XADD -> alu(SUB_ADD, s, old, getReg(s, in.reg));
            default -> {  // CMPXCHG
                alu(SUB_CMP, s, getReg(s, 0), old);
                yield getReg(s, in.reg);
            }
        };
    }

    /** Register effects of a read-modify-write once memory holds the new value. */
    private void rmwRegisters(Insn in, long old) {
        if (in.op == XCHG || in.op == XADD) setReg(in.size, in.reg, old);
    }

    // ---------------------------------------------------------------- shifts and rotates

    private void shiftOp(Insn in) {
        int s = in.size;
        int count = (int) (in.size2 == 1 ? r[1] : in.imm) & (s == 8 ? 63 : 31);
        long addr = in.mem ? ea(in) : 0;
        long v = in.mem ? mmu.read(addr, s) : getReg(s, in.rm);
        if (count == 0) {  // flags unchanged; a 32-bit register destination is still zero-extended
            if (!in.mem && s == 4) r[in.rm] &= 0xffffffffL;
            return;
        }
        long res = shift(in.sub, s, v, count, in.size2 != 1 && !in.mem);
        if (in.mem) mmu.write(addr, s, res); else setReg(s, in.rm, res);
    }

    /**
     * Shift/rotate {@code v} (zero-extended, {@code size} bytes) by a non-zero masked count; sets flags.
     * OF for counts above 1 (undefined per Intel) is what Intel hardware gives, measured against the host
     * CPU: the OF a 1-bit operation on the original operand would produce, except for ROL/ROR of a
     * register by an immediate count above 1 and RCL/RCR by a multiple of width+1, which leave OF unchanged.
     */
    long shift(int kind, int size, long v, int count, boolean immediateRegister) {
        int bits = size << 3;
        long m = mask(size), sign = signBit(size);
        long f = rflags() & ~ARITH;
        long old = rflags();
        long res;
        boolean cf, of;
        switch (kind) {
            case SH_ROL -> {
                int c = count & (bits - 1);
                res = c == 0 ? v : ((v << c) | (v >>> (bits - c))) & m;
                cf = (res & 1) != 0;
                of = immediateRegister && count > 1 ? (old & OF) != 0 : ((v & sign) != 0) ^ ((v & (sign >>> 1)) != 0);
                eflags = (old & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0);
                fop = F_NONE;
                return res;
            }
            case SH_ROR -> {
                int c = count & (bits - 1);
                res = c == 0 ? v : ((v >>> c) | (v << (bits - c))) & m;
                cf = (res & sign) != 0;
                of = immediateRegister && count > 1 ? (old & OF) != 0 : ((v & 1) != 0) ^ ((v & sign) != 0);
                eflags = (old & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0);
                fop = F_NONE;
                return res;
            }
            case SH_RCL, SH_RCR -> {
                int c = size == 1 ? count % 9 : size == 2 ? count % 17 : count;
                boolean carry = (old & CF) != 0;
                res = v;
                for (int i = 0; i < c; i++) {
                    if (kind == SH_RCL) {
                        boolean out = (res & sign) != 0;
                        res = ((res << 1) | (carry ? 1 : 0)) & m;
                        carry = out;
                    } else {
                        boolean out = (res & 1) != 0;
                        res = (res >>> 1) | (carry ? sign : 0);
                        carry = out;
                    }
                }
                cf = carry;
                if (c == 0) of = (old & OF) != 0;
                else of = kind == SH_RCL ? ((v & sign) != 0) ^ ((v & (sign >>> 1)) != 0) : ((old & CF) != 0) ^ ((v & sign) != 0);
                eflags = (old & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0);
                fop = F_NONE;
                return res;
            }
            case SH_SHL, SH_SAL -> {
                res = count >= 64 ? 0 : (v << count) & m;
                cf = count <= bits && ((v >>> (bits - count)) & 1) != 0;
                of = ((v & sign) != 0) ^ ((v & (sign >>> 1)) != 0);
            }
            case SH_SHR -> {
                res = v >>> count;
                cf = ((v >>> (count - 1)) & 1) != 0;
                of = (v & sign) != 0;
            }
            default -> {  // SAR
                long sv = sext(v, size);
                res = (sv >> Math.min(count, 63)) & m;
                cf = ((sv >> Math.min(count - 1, 63)) & 1) != 0;
                of = false;
            }
        }
        f |= (cf ? CF : 0) | (of ? OF : 0) | (res == 0 ? ZF : 0) | ((res & sign) != 0 ? SF : 0) | (parity(res) ? PF : 0)
                | shiftAf(kind, old);
        eflags = f;
        fop = F_NONE;
        return res;
    }

    /** AF after SHL/SHR/SAR, which Intel leaves undefined: this CPU family clears it (see docs). */
    private static long shiftAf(int kind, long old) { return 0; }

    /**
     * SHLD/SHRD. A 16-bit operand with a count above 16 (undefined per Intel) behaves on Intel hardware
     * like a shift of the 48-bit string dest:src:dest; OF is that of the first 1-bit step (as measured).
     */
    private void shiftDouble(Insn in) {
        int s = in.size;
        int bits = s << 3;
        int count = (int) (in.size2 == 1 ? r[1] : in.imm) & (s == 8 ? 63 : 31);
        long addr = in.mem ? ea(in) : 0;
        long d = in.mem ? mmu.read(addr, s) : getReg(s, in.rm);
        if (count == 0) {
            if (!in.mem && s == 4) r[in.rm] &= 0xffffffffL;
            return;
        }
        long src = getReg(s, in.reg);
        long m = mask(s), sign = signBit(s);
        long res;
        boolean cf, of;
        if (in.op == SHLD) {
            if (s == 2) {
                long x = (d << 32) | (src << 16) | d;
                res = (x >>> (32 - count)) & m;
                cf = ((x >>> (48 - count)) & 1) != 0;
            } else {
                res = count == bits ? src : ((d << count) | (src >>> (bits - count))) & m;
                cf = ((d >>> (bits - count)) & 1) != 0;
            }
            of = ((d & sign) != 0) ^ ((d & (sign >>> 1)) != 0);
        } else {
            if (s == 2) {
                long x = (d << 32) | (src << 16) | d;
                res = (x >>> count) & m;
                cf = ((x >>> (count - 1)) & 1) != 0;
            } else {
                res = ((d >>> count) | (src << (bits - count))) & m;
                cf = ((d >>> (count - 1)) & 1) != 0;
            }
            of = ((src & 1) != 0) ^ ((d & sign) != 0);
        }
        long f = rflags() & ~ARITH;
        f |= (cf ? CF : 0) | (of ? OF : 0) | (res == 0 ? ZF : 0) | ((res & sign) != 0 ? SF : 0) | (parity(res) ? PF : 0);
        eflags = f;
        fop = F_NONE;
        if (in.mem) mmu.write(addr, s, res); else setReg(s, in.rm, res);
    }

    // ---------------------------------------------------------------- multiply and divide

    /** Flags after MUL/IMUL: CF=OF=overflow; SF and PF from the low half; ZF and AF clear (as Intel hardware). */
    private void mulFlags(int size, long low, boolean overflow) {
        long f = rflags() & ~ARITH;
        f |= (overflow ? CF | OF : 0) | ((low & signBit(size)) != 0 ? SF : 0) | (parity(low) ? PF : 0);
        eflags = f;
        fop = F_NONE;
    }

    private long imul(int size, long a, long b) {
        long sa = sext(a, size), sb = sext(b, size);
        long lo = sa * sb;
        boolean overflow;
        if (size == 8) overflow = Math.multiplyHigh(sa, sb) != (lo >> 63);
        else overflow = sext(lo, size) != lo;
        long res = lo & mask(size);
        mulFlags(size, res, overflow);
        return res;
    }

    private void mul1(Insn in) {
        int s = in.size;
        long src = readRm(in, s);
        boolean signed = in.sub == 1;
        long a = getReg(s, 0);
        switch (s) {
            case 1 -> {
                long p = signed ? (long) (byte) a * (byte) src : a * src;
                setReg(2, 0, p);
                mulFlags(1, p & 0xff, signed ? (byte) p != (short) p : (p & 0xff00) != 0);
            }
            case 2 -> {
                long p = signed ? (long) (short) a * (short) src : a * src;
                setReg(2, 0, p);
                setReg(2, 2, p >>> 16);
                mulFlags(2, p & 0xffff, signed ? (short) p != (int) p : (p & 0xffff0000L) != 0);
            }
            case 4 -> {
                long p = signed ? (long) (int) a * (int) src : a * src;
                setReg(4, 0, p);
                setReg(4, 2, p >>> 32);
                mulFlags(4, p & 0xffffffffL, signed ? (int) p != p : (p >>> 32) != 0);
            }
            default -> {
                long lo = a * src;
                long hi = signed ? Math.multiplyHigh(a, src) : Math.unsignedMultiplyHigh(a, src);
                r[0] = lo;
                r[2] = hi;
                mulFlags(8, lo, signed ? hi != (lo >> 63) : hi != 0);
            }
        }
    }

    private void div(Insn in) {
        int s = in.size;
        long d = readRm(in, s);
        boolean signed = in.sub == 1;
        if (d == 0) vcpu.raiseException(DE, 0, insnStart);
        long q, rem;
        if (s < 8) {
            int bits = s << 3;
            long lo = s == 1 ? r[0] & 0xff : getReg(s, 0);
            long hi = s == 1 ? (r[0] >>> 8) & 0xff : getReg(s, 2);
            long dividend = (hi << bits) | lo;  // at most 64 bits
            if (signed) {
                long n = s == 4 ? dividend : sext(dividend, s * 2);
                long sd = sext(d, s);
                if (s == 4 && n == Long.MIN_VALUE && sd == -1) vcpu.raiseException(DE, 0, insnStart);
                q = n / sd;
                rem = n % sd;
                if (q != sext(q, s)) vcpu.raiseException(DE, 0, insnStart);
            } else {
                q = Long.divideUnsigned(dividend, d);
                rem = Long.remainderUnsigned(dividend, d);
                if ((q & ~mask(s)) != 0) vcpu.raiseException(DE, 0, insnStart);
            }
            if (s == 1) {
                r[0] = (r[0] & ~0xffffL) | (q & 0xff) | ((rem & 0xff) << 8);
            } else {
                setReg(s, 0, q);
                setReg(s, 2, rem);
            }
        } else {
            long hi = r[2], lo = r[0];
            if (signed) {
                boolean negN = hi < 0, negD = d < 0;
                long nh = hi, nl = lo;
                if (negN) { nl = -lo; nh = ~hi + (lo == 0 ? 1 : 0); }
                long ud = negD ? -d : d;
                if (Long.compareUnsigned(nh, ud) >= 0) vcpu.raiseException(DE, 0, insnStart);
                long[] qr = divu128(nh, nl, ud);
                long uq = qr[0], ur = qr[1];
                boolean negQ = negN != negD;
                if (negQ ? Long.compareUnsigned(uq, 1L << 63) > 0 : uq < 0) vcpu.raiseException(DE, 0, insnStart);
                q = negQ ? -uq : uq;
                rem = negN ? -ur : ur;
            } else {
                if (Long.compareUnsigned(hi, d) >= 0) vcpu.raiseException(DE, 0, insnStart);
                long[] qr = divu128(hi, lo, d);
                q = qr[0];
                rem = qr[1];
            }
            r[0] = q;
            r[2] = rem;
        }
        divFlags();
    }

    /** Flags after DIV/IDIV (all undefined per Intel): this model leaves them unchanged (see docs). */
    private void divFlags() { }

    private final long[] divOut = new long[2];

    /** (hi:lo) / d for hi < d, unsigned: quotient and remainder (shift-subtract, 64 steps). */
    private long[] divu128(long hi, long lo, long d) {
        if (hi == 0) {
            divOut[0] = Long.divideUnsigned(lo, d);
            divOut[1] = Long.remainderUnsigned(lo, d);
            return divOut;
        }
        long q = 0, rem = hi;
        for (int i = 63; i >= 0; i--) {
            boolean top = rem < 0;
            rem = (rem << 1) | ((lo >>> i) & 1);
            q <<= 1;
            if (top || Long.compareUnsigned(rem, d) >= 0) {
                rem -= d;
                q |= 1;
            }
        }
        divOut[0] = q;
        divOut[1] = rem;
        return divOut;
    }

    // ---------------------------------------------------------------- bit operations

    private void bitScan(Insn in) {
        int s = in.size, bits = s << 3;
        long v = readRm(in, s);
        long f = rflags() & ~ARITH;
        switch (in.op) {
            case BSF, BSR -> {
                if (v == 0) {
                    f |= ZF | PF;  // destination unchanged, all 64 bits (as Intel hardware does)
                } else {
                    long res = in.op == BSF ? Long.numberOfTrailingZeros(v) : 63 - Long.numberOfLeadingZeros(v);
                    setReg(s, in.reg, res);
                    f |= parity(res) ? PF : 0;
                }
            }
            case TZCNT, LZCNT -> {
                long res = v == 0 ? bits
                        : in.op == TZCNT ? Long.numberOfTrailingZeros(v) : Long.numberOfLeadingZeros(v) - (64 - bits);
                setReg(s, in.reg, res);
                f |= (v == 0 ? CF : 0) | (res == 0 ? ZF : 0);
            }
            default -> {  // POPCNT
                long res = Long.bitCount(v);
                setReg(s, in.reg, res);
                f |= v == 0 ? ZF : 0;
            }
        }
        eflags = f;
        fop = F_NONE;
    }

    private void bitTest(Insn in) {
        int s = in.size, bits = s << 3;
        long off = in.size2 == 1 ? in.imm : getReg(s, in.reg);
        long bit;
        long addr = 0;
        if (in.mem) {
            addr = ea(in);
            if (in.size2 == 1) {
                bit = off & (bits - 1);
            } else {
                long soff = sext(off, s);
                addr += (soff >> (s == 8 ? 6 : s == 4 ? 5 : 4)) * s;
                bit = soff & (bits - 1);
            }
        } else {
            bit = off & (bits - 1);
        }
        long b = 1L << bit;
        long v;
        if (in.mem && in.lock && (addr & 0xfff) + s <= 4096) {
            long hoff = mmu.hostFor(addr, Mmu.ACC_WRITE, s);
            MemorySegment seg = mmu.lastSegment;
            if (seg != null) {
                for (;;) {
                    v = Mmu.atomicLoad(seg, hoff, s);
                    if (Mmu.cas(seg, hoff, s, v, bitResult(in.sub, v, b))) break;
                }
                setBtCarry((v & b) != 0);
                return;
            }
        }
        v = in.mem ? mmu.read(addr, s) : getReg(s, in.rm);
        if (in.sub != 0) {
            long nv = bitResult(in.sub, v, b);
            if (in.mem) mmu.write(addr, s, nv); else setReg(s, in.rm, nv);
        }
        setBtCarry((v & b) != 0);
    }

    private static long bitResult(int sub, long v, long b) {
        return switch (sub) {
            case 0 -> v;
            case 1 -> v | b;
            case 2 -> v & ~b;
            default -> v ^ b;
        };
    }

    /** BT*: CF is the tested bit; ZF unchanged; OF, SF, AF, PF undefined (kept, see docs). */
    private void setBtCarry(boolean bit) {
        materialiseFlags();
        eflags = (eflags & ~CF) | (bit ? CF : 0);
    }

    // ---------------------------------------------------------------- string instructions

    private void string(Insn in) {
        int s = in.size;
        long amask = in.addr32 ? 0xffffffffL : -1L;
        long step = (eflags & DF) != 0 ? -s : s;
        boolean rep = in.rep || in.repne;
        if (!rep) {
            stringOnce(in, s, amask, step);
            return;
        }
        for (int n = 0; ; n++) {
            long c = r[1] & amask;
            if (c == 0) return;
            if (n == REP_CHUNK) {  // yield: resume this instruction on the next run of the loop
                rip = insnStart;
                retired--;
                curPage = -1;
                return;
            }
            stringOnce(in, s, amask, step);
            vcpu.stringIterationDone();
            c = (c - 1) & amask;
            r[1] = c;
            if (in.sub == STR_CMPS || in.sub == STR_SCAS) {
                boolean z = zf();
                if (in.rep && !z || in.repne && z) return;
            }
            if (vcpu.exitReady()) {  // an MMIO write in this iteration: exit, resume the rest later
                if ((r[1] & amask) != 0) { rip = insnStart; retired--; }
                return;
            }
        }
    }

    private void stringOnce(Insn in, int s, long amask, long step) {
        long si = r[6] & amask, di = r[7] & amask;
        switch (in.sub) {
            case STR_MOVS -> {
                long v = mmu.read(in.seg != 0 ? si + segBase(in.seg) : si, s);
                mmu.write(di, s, v);
                r[6] = (si + step) & amask;
                r[7] = (di + step) & amask;
            }
            case STR_STOS -> {
                mmu.write(di, s, getReg(s, 0));
                r[7] = (di + step) & amask;
            }
            case STR_LODS -> {
                setReg(s, 0, mmu.read(in.seg != 0 ? si + segBase(in.seg) : si, s));
                r[6] = (si + step) & amask;
            }
            case STR_CMPS -> {
                long a = mmu.read(in.seg != 0 ? si + segBase(in.seg) : si, s);
                long b = mmu.read(di, s);
                alu(SUB_CMP, s, a, b);
                r[6] = (si + step) & amask;
                r[7] = (di + step) & amask;
            }
            default -> {  // SCAS
                long b = mmu.read(di, s);
                alu(SUB_CMP, s, getReg(s, 0), b);
                r[7] = (di + step) & amask;
            }
        }
    }

    private long segBase(int seg) { return seg == 4 ? fsBase : gsBase; }

    /** Resets the architectural state to what KVM_CREATE_VCPU gives before registers are set. */
    public void reset() {
        java.util.Arrays.fill(r, 0);
        rip = 0xfff0;
        setRflags(2);
        cr0 = Sregs.CR0_ET | Sregs.CR0_NE;
        cr2 = cr3 = cr4 = cr8 = efer = 0;
    }
}
