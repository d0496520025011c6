// The network harness: a Verilated system top (mensa.hw.system: the accelerators behind one AXI4-Lite
// slave and one AXI4 master), its DRAM modelled here in C++, and mensa's C runtime (mensa_runtime.c)
// replaying a command list through the accelerators' registers. Built with -DWORD_BYTES (the bus's
// bytes), -DWINDOW (bytes of one accelerator's register window), -DUNITS (accelerators) and
// -DCREDIT_WORDS (bus words of bandwidth the DRAM banks while it idles, at least 2: a read and a write
// beat in one cycle; mensa.contract.numeric.DRAM_CREDIT_WORDS, which the cost model counts).
//
// No Python runs while it simulates: the DRAM answers every AXI4 beat here, with a read latency per
// burst and, optionally, random pauses on every channel (a seeded generator).
//
//   harness --image F --list F --out F [--vaults F] [--latency N] [--vault-latency N] [--bandwidth B] [--pause P]
//           [--seed S] [--max-cycles N] [--trace F]
//
// --image   the DRAM contents from address 0 (the network's constants and the host's inputs); its
//           size is the DRAM's size
// --list    the command list (little-endian 32-bit words, see mensa.contract.network)
// --bandwidth  bytes per cycle the DRAM moves, reads and writes together (0: one beat each way per cycle)
// --vaults  the near-memory accelerators' vault contents, loaded by backdoor: per vault a u32 unit, a u32
//           vault, a u64 byte count and the bytes from word 0 (mensa.sim.harness.run writes it). A vault
//           answers a word per cycle, in request order, --vault-latency cycles after the request
//           (default --latency), with the same random pauses as the DRAM.
// --out     written as the commands finish: per command, its index, its cycle count (accelerator's
//           CYCLES_TOTAL), the simulated cycle it finished at, the bus bytes read and written since
//           reset (u32, u64, u64, u64, u64), and its output region's bytes (the command list gives
//           where and how many)
// --trace   the DRAM bus, one line per handshake: "CYCLE ar|aw ADDR BEATS" per burst, "CYCLE r|w|b" per beat
//           and response
// Prints "done INDEX CYCLES" per command as it finishes and "cycles N" at the end on stdout.
#include "Vtop.h"
#include "verilated.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <string>
#include <vector>

static_assert(CREDIT_WORDS >= 2, "the DRAM moves a read and a write beat in one cycle only with two words of credit");

extern "C" {
#include "mensa_runtime.h"
}

namespace {

template <typename T> void put(T &sig, const uint8_t *p, size_t n) {
    uint64_t v = 0;
    std::memcpy(&v, p, n < 8 ? n : 8);
    sig = static_cast<T>(v);
}
template <std::size_t N> void put(VlWide<N> &sig, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < N; i++) {
        uint32_t w = 0;
        if (4 * i < n) std::memcpy(&w, p + 4 * i, n - 4 * i < 4 ? n - 4 * i : 4);
        sig[i] = w;
    }
}
template <typename T> void get(const T &sig, uint8_t *p, size_t n) {
    uint64_t v = sig;
    std::memcpy(p, &v, n < 8 ? n : 8);
}
template <std::size_t N> void get(const VlWide<N> &sig, uint8_t *p, size_t n) {
    for (size_t i = 0; i < N && 4 * i < n; i++) {
        uint32_t w = sig[i];
        std::memcpy(p + 4 * i, &w, n - 4 * i < 4 ? n - 4 * i : 4);
    }
}
template <typename T> uint64_t bits(const T &sig) { return static_cast<uint64_t>(sig); }
template <std::size_t N> uint64_t bits(const VlWide<N> &sig) { return sig[0] | (uint64_t)sig[1] << 32; }

[[noreturn]] void fail(const std::string &what) {
    std::fprintf(stderr, "harness: %s\n", what.c_str());
    std::exit(3);
}

// One vault port of the system top (vaults.h binds them): its request and response streams.
struct VaultPort {
    uint32_t unit, vault, word_bytes;
    bool (*req_valid)(Vtop *);
    uint64_t (*req_addr)(Vtop *);
    void (*set_req_ready)(Vtop *, bool);
    void (*set_resp)(Vtop *, bool, const uint8_t *);
    bool (*resp_ready)(Vtop *);
    std::vector<uint8_t> mem;
    std::deque<std::pair<uint64_t, uint64_t>> pending;   // (due cycle, word address), in request order
    bool ready = false, valid = false;                   // what the harness drives this cycle
    bool took = false, gave = false;                     // this cycle's handshakes
    uint64_t took_addr = 0;
};

}  // namespace

#include "vaults.h"   // void bind_vaults(std::vector<VaultPort> &): generated per system top

namespace {

constexpr size_t VAULT_OUTSTANDING = 64;   // requests a vault holds before it stops taking more

struct Burst {
    uint64_t addr;
    uint32_t beats, size, id;
    uint64_t due;
};

struct Sim {
    Vtop *top;
    std::vector<uint8_t> mem;
    uint32_t latency = 20;
    double pause = 0.0;
    double bandwidth = 0.0;            // bytes per cycle, reads and writes together; 0: a beat each way per cycle
    double credit = 0.0;               // bytes the DRAM may move now (a token bucket of CREDIT_WORDS beats)
    bool write_turn = false;
    std::mt19937_64 rng;
    std::uniform_real_distribution<double> coin{0.0, 1.0};
    uint64_t cycle = 0, max_cycles = 0;
    uint64_t read_bytes = 0, written_bytes = 0;   // bus bytes moved so far, each way
    std::deque<Burst> reads, writes;   // accepted read bursts; write bursts awaiting data
    std::deque<std::pair<uint64_t, uint32_t>> responses;   // (due, id) of write responses
    uint32_t r_beat = 0, w_beat = 0;
    size_t word_bytes;
    std::FILE *trace = nullptr;
    std::vector<VaultPort> vaults;
    uint32_t vault_latency = 20;
    uint64_t vault_bytes = 0;          // bytes the vaults returned

    bool go() { return pause <= 0.0 || coin(rng) >= pause; }

    uint8_t *at(uint64_t addr, size_t n) {
        if (addr + n > mem.size())
            fail("DRAM access at 0x" + std::to_string(addr) + " beyond the image of " + std::to_string(mem.size()) +
                 " bytes");
        return mem.data() + addr;
    }

    // Whether the bandwidth allows a beat this cycle (its bytes are paid when it moves).
    bool afford(bool other) {
        return bandwidth <= 0.0 || credit >= (double)word_bytes * (other ? 2 : 1);
    }

    // The DRAM's outputs for the coming cycle, from its state.
    void drive() {
        top->m_axi_arready = go();
        top->m_axi_awready = go();
        bool r = !reads.empty() && reads.front().due <= cycle && afford(false) && go();
        bool w = !writes.empty() && afford(false) && go();
        if (r && w && !afford(true)) {     // bandwidth for one beat: reads and writes take turns
            if (write_turn) r = false; else w = false;
            write_turn = !write_turn;
        }
        top->m_axi_rvalid = r;
        if (r) {
            const Burst &b = reads.front();
            uint64_t addr = b.addr + (uint64_t)r_beat * b.size;
            uint64_t lane = addr & ~(uint64_t)(word_bytes - 1);
            put(top->m_axi_rdata, at(lane, word_bytes), word_bytes);
            top->m_axi_rlast = r_beat + 1 == b.beats;
            top->m_axi_rid = b.id;
            top->m_axi_rresp = 0;
        }
        top->m_axi_wready = w;
        bool bv = !responses.empty() && responses.front().first <= cycle && go();
        top->m_axi_bvalid = bv;
        if (bv) {
            top->m_axi_bid = responses.front().second;
            top->m_axi_bresp = 0;
        }
        for (VaultPort &v : vaults) {
            v.ready = v.pending.size() < VAULT_OUTSTANDING && go();
            v.set_req_ready(top, v.ready);
            v.valid = !v.pending.empty() && v.pending.front().first <= cycle && go();
            v.set_resp(top, v.valid, v.valid ? vault_word(v, v.pending.front().second) : nullptr);
        }
    }

    const uint8_t *vault_word(const VaultPort &v, uint64_t addr) {
        if ((addr + 1) * v.word_bytes > v.mem.size())
            fail("unit " + std::to_string(v.unit) + " vault " + std::to_string(v.vault) + ": a read of word " +
                 std::to_string(addr) + ", beyond the " + std::to_string(v.mem.size() / v.word_bytes) +
                 " words loaded");
        return v.mem.data() + addr * v.word_bytes;
    }

    // One clock cycle: sample the handshakes before the rising edge, clock, update the DRAM.
    void tick() {
        top->clk = 0;
        top->eval();
        bool ar = top->m_axi_arvalid && top->m_axi_arready;
        Burst arb{};
        if (ar) {
            if (bits(top->m_axi_arburst) != 1) fail("a read burst that is not INCR");
            arb = {bits(top->m_axi_araddr), (uint32_t)bits(top->m_axi_arlen) + 1,
                   1u << (uint32_t)bits(top->m_axi_arsize), (uint32_t)bits(top->m_axi_arid), cycle + latency};
        }
        bool r = top->m_axi_rvalid && top->m_axi_rready;
        bool aw = top->m_axi_awvalid && top->m_axi_awready;
        Burst awb{};
        if (aw) {
            if (bits(top->m_axi_awburst) != 1) fail("a write burst that is not INCR");
            awb = {bits(top->m_axi_awaddr), (uint32_t)bits(top->m_axi_awlen) + 1,
                   1u << (uint32_t)bits(top->m_axi_awsize), (uint32_t)bits(top->m_axi_awid), 0};
        }
        bool w = top->m_axi_wvalid && top->m_axi_wready;
        if (w) {
            const Burst &b = writes.front();
            uint64_t addr = b.addr + (uint64_t)w_beat * b.size;
            uint64_t lane = addr & ~(uint64_t)(word_bytes - 1);
            std::vector<uint8_t> data(word_bytes);
            get(top->m_axi_wdata, data.data(), word_bytes);
            uint64_t strobe = bits(top->m_axi_wstrb);
            uint8_t *dst = at(lane, word_bytes);
            for (size_t i = 0; i < word_bytes; i++)
                if (strobe >> i & 1) dst[i] = data[i];
            if (++w_beat == b.beats) {
                if (!top->m_axi_wlast) fail("WLAST missing on a burst's last beat");
                responses.emplace_back(cycle + 1, b.id);
                writes.pop_front();
                w_beat = 0;
            }
        }
        bool bfire = top->m_axi_bvalid && top->m_axi_bready;
        for (VaultPort &v : vaults) {       // the vaults' handshakes (ready and valid are the harness's own)
            v.took = v.ready && v.req_valid(top);
            if (v.took) v.took_addr = v.req_addr(top);
            v.gave = v.valid && v.resp_ready(top);
        }
        if (trace) {
            if (ar) std::fprintf(trace, "%llu ar %llu %u\n", (unsigned long long)cycle, (unsigned long long)arb.addr, arb.beats);
            if (aw) std::fprintf(trace, "%llu aw %llu %u\n", (unsigned long long)cycle, (unsigned long long)awb.addr, awb.beats);
            if (r) std::fprintf(trace, "%llu r\n", (unsigned long long)cycle);
            if (w) std::fprintf(trace, "%llu w\n", (unsigned long long)cycle);
            if (bfire) std::fprintf(trace, "%llu b\n", (unsigned long long)cycle);
        }
        top->clk = 1;
        top->eval();
        cycle++;
        if (bandwidth > 0.0) {
            credit -= (double)word_bytes * ((r ? 1 : 0) + (w ? 1 : 0));
            credit = std::min(credit + bandwidth, (double)CREDIT_WORDS * (double)word_bytes);
        }
        if (ar) reads.push_back(arb);
        read_bytes += r ? word_bytes : 0;
        written_bytes += w ? word_bytes : 0;
        if (r && ++r_beat == reads.front().beats) {
            reads.pop_front();
            r_beat = 0;
        }
        if (aw) writes.push_back(awb);
        if (bfire) responses.pop_front();
        for (VaultPort &v : vaults) {
            if (v.gave) {
                v.pending.pop_front();
                vault_bytes += v.word_bytes;
            }
            if (v.took) v.pending.emplace_back(cycle - 1 + vault_latency, v.took_addr);
        }
        if (max_cycles && cycle > max_cycles) fail("no finish after " + std::to_string(max_cycles) + " cycles");
        drive();
    }

    void write_reg(uint32_t offset, uint32_t value) {
        top->s_axil_awaddr = offset;
        top->s_axil_awvalid = 1;
        top->s_axil_wdata = value;
        top->s_axil_wstrb = 0xF;
        top->s_axil_wvalid = 1;
        top->s_axil_bready = 1;
        bool a = false, d = false;
        for (;;) {
            top->clk = 0;
            top->eval();
            bool af = top->s_axil_awvalid && top->s_axil_awready, df = top->s_axil_wvalid && top->s_axil_wready;
            bool bf = top->s_axil_bvalid && top->s_axil_bready;
            tick();
            if (af) { a = true; top->s_axil_awvalid = 0; }
            if (df) { d = true; top->s_axil_wvalid = 0; }
            if (bf && a && d) break;
        }
        top->s_axil_bready = 0;
    }

    uint32_t read_reg(uint32_t offset) {
        top->s_axil_araddr = offset;
        top->s_axil_arvalid = 1;
        top->s_axil_rready = 1;
        uint32_t value = 0;
        for (;;) {
            top->clk = 0;
            top->eval();
            bool af = top->s_axil_arvalid && top->s_axil_arready;
            bool rf = top->s_axil_rvalid && top->s_axil_rready;
            if (rf) value = top->s_axil_rdata;
            tick();
            if (af) top->s_axil_arvalid = 0;
            if (rf) break;
        }
        top->s_axil_rready = 0;
        return value;
    }
};

Sim *sim;
std::vector<uint32_t> list;
std::vector<size_t> command_at;   // word offset of every command
std::FILE *out;

uint32_t address(uint32_t unit, uint32_t offset) {
    if (unit >= UNITS)
        fail("the command list names accelerator " + std::to_string(unit) + "; the system has " +
             std::to_string(UNITS));
    return unit * WINDOW + offset;
}

uint32_t hal_read(void *, uint32_t unit, uint32_t offset) { return sim->read_reg(address(unit, offset)); }

void hal_write(void *, uint32_t unit, uint32_t offset, uint32_t value) {
    sim->write_reg(address(unit, offset), value);
}

void hal_wait(void *) {
    while (!sim->top->irq) sim->tick();
}

void hal_done(void *, uint32_t command, uint64_t cycles) {
    const uint32_t *cmd = list.data() + command_at[command];
    uint64_t addr = cmd[3] | (uint64_t)cmd[4] << 32;
    uint32_t bytes = cmd[5];
    std::fwrite(&command, 4, 1, out);
    std::fwrite(&cycles, 8, 1, out);
    std::fwrite(&sim->cycle, 8, 1, out);
    std::fwrite(&sim->read_bytes, 8, 1, out);
    std::fwrite(&sim->written_bytes, 8, 1, out);
    std::fwrite(sim->at(addr, bytes), 1, bytes, out);
    std::fflush(out);
    std::printf("done %u %llu\n", command, (unsigned long long)cycles);
    std::fflush(stdout);
}

std::vector<uint8_t> slurp(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("cannot read " + path);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char **argv) {
    Verilated::commandArgs(argc, argv);
    std::string image, list_path, out_path, vaults_path;
    bool vault_latency_set = false;
    Sim s;
    uint64_t seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--image") image = v;
        else if (k == "--list") list_path = v;
        else if (k == "--out") out_path = v;
        else if (k == "--latency") s.latency = std::stoul(v);
        else if (k == "--vault-latency") { s.vault_latency = std::stoul(v); vault_latency_set = true; }
        else if (k == "--vaults") vaults_path = v;
        else if (k == "--pause") s.pause = std::stod(v);
        else if (k == "--bandwidth") s.bandwidth = std::stod(v);
        else if (k == "--seed") seed = std::stoull(v);
        else if (k == "--max-cycles") s.max_cycles = std::stoull(v);
        else if (k == "--trace") {
            s.trace = std::fopen(v.c_str(), "w");
            if (!s.trace) fail("cannot write " + v);
        }
        else fail("unknown option " + k);
    }
    if (image.empty() || list_path.empty() || out_path.empty()) fail("--image, --list and --out are needed");
    s.rng.seed(seed);
    s.mem = slurp(image);
    if (!vault_latency_set) s.vault_latency = s.latency;
    bind_vaults(s.vaults);
    if (!vaults_path.empty()) {
        std::vector<uint8_t> raw = slurp(vaults_path);
        size_t at = 0;
        while (at + 16 <= raw.size()) {
            uint32_t unit, vault;
            uint64_t bytes;
            std::memcpy(&unit, &raw[at], 4);
            std::memcpy(&vault, &raw[at + 4], 4);
            std::memcpy(&bytes, &raw[at + 8], 8);
            at += 16;
            if (at + bytes > raw.size()) fail("a truncated vault file");
            auto port = std::find_if(s.vaults.begin(), s.vaults.end(),
                                     [&](const VaultPort &p) { return p.unit == unit && p.vault == vault; });
            if (port == s.vaults.end())
                fail("the vault file names unit " + std::to_string(unit) + " vault " + std::to_string(vault) +
                     ", which the system top does not have");
            port->mem.assign(raw.begin() + at, raw.begin() + at + bytes);
            at += bytes;
        }
    }
    std::vector<uint8_t> raw = slurp(list_path);
    list.resize(raw.size() / 4);
    std::memcpy(list.data(), raw.data(), list.size() * 4);
    int32_t count = mensa_list_commands(list.data(), (uint32_t)list.size());
    if (count < 0) fail("a bad command list (" + std::to_string(count) + ")");
    for (size_t i = 0, at = 3; i < (size_t)count; i++) {
        command_at.push_back(at);
        at += 6 + list[at + 1] + 2 * list[at + 2];
    }
    out = std::fopen(out_path.c_str(), "wb");
    if (!out) fail("cannot write " + out_path);

    Vtop top;
    s.top = &top;
    s.word_bytes = WORD_BYTES;   // the bus width in bytes, given at build time
    sim = &s;
    s.drive();   // the design starts from its registers' initial values (its reset is tied low)
    s.tick();

    mensa_hal_t hal = {nullptr, hal_read, hal_write, hal_wait, hal_done};
    mensa_status_t status = mensa_run(&hal, list.data(), (uint32_t)list.size());
    std::fclose(out);
    if (s.trace) std::fclose(s.trace);
    if (status != MENSA_OK) fail("mensa_run returned " + std::to_string(status));
    std::printf("cycles %llu\n", (unsigned long long)s.cycle);
    std::printf("vault_bytes %llu\n", (unsigned long long)s.vault_bytes);
    top.final();
    return 0;
}
