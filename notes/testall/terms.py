"""Per-layer decomposition of the model's WS stream terms (debug)."""
import sys, numpy as np
from mensa.gen.validate import ACCELERATORS, accelerator_suite, LATENCIES
from mensa.model import cost as C, ws_stream as W
from mensa.model.tiling import ws_tiling, Window, Tiling, accumulator_tiles
from mensa.core.config import DramConfig
from mensa.contract.numeric import READS_IN_FLIGHT as F

def terms(layers, acc_cfg, lat, cal=C.Calibration()):
    lt = C.LayerTable(layers); acc = C.AcceleratorTable([acc_cfg], DramConfig(latency_cycles=lat))
    col = C._col
    M1,K1,N1,G,R = col(lt.m1),col(lt.k1),col(lt.n1),col(lt.g),col(lt.r)
    in_b,out_b,p_b = col(lt.in_bytes),col(lt.out_bytes),col(lt.param_bytes)
    spill=(in_b+out_b)>acc.abuf; fit=p_b<=acc.wbuf
    tiling = ws_tiling(Window(lt,col),acc)
    onchip = Tiling(*np.broadcast_arrays(*accumulator_tiles(M1, acc), tiling.vectors, tiling.first, tiling.commands, tiling.halo, tiling.segments, tiling.run, tiling.run_short))
    tiling = Tiling(*(np.where(spill, d, o) for d, o in zip(vars(tiling).values(), vars(onchip).values())))
    taps = col(lt.taps)
    c = C.evaluate(layers,[acc_cfg],DramConfig(latency_cycles=lat),calibration=cal)
    busy = c.compute + c.load  # c1+l1 (no vec)
    t = W._traffic(K1,N1,G,R,fit,spill,tiling,taps,acc,cal)
    per_k_tile = W.burst_chain(t.w_words,0.0,t.burst,t.held,t.cpw)
    windows = (t.win_words*t.cpw + np.maximum(t.win_bursts-F,0)*t.held)/F
    infl = W._reads_in_flight(t,M1,R,spill,tiling,per_k_tile,windows,acc,cal)
    bank = W._weight_banks(t,M1,G,R,acc,cal)
    first, later = W._exposed(t,K1,G,R,taps,tiling,busy,per_k_tile,acc,cal)
    out=[]
    for i,l in enumerate(layers):
        out.append(dict(layer=l.name, cycles=c.cycles[i,0], compute=c.compute[i,0], load=c.load[i,0], fill=c.fill[i,0],
            dma=c.dma[i,0], stall=c.stall[i,0], bus=t.bus[i,0], inflight=infl[i,0], bank=bank[i,0], first=first[i,0], later=later[i,0],
            windows=windows[i,0], per_k_tile=float(np.broadcast_to(per_k_tile, c.cycles.shape)[i,0]), mt=t.mt[i,0], kt=t.kt[i,0], nt=t.nt[i,0],
            fw=t.fw[i,0], pixels=tiling.pixels[i,0], win_words=t.win_words[i,0], win_bursts=t.win_bursts[i,0], first_words=t.first_words[i,0],
            segments=tiling.segments[i,0], tiles=t.tiles[i,0], slots=t.slots[i,0], spill=bool(spill[i,0]), fit=bool(fit[i,0])))
    return out

if __name__ == "__main__":
    name, lat = sys.argv[1], int(sys.argv[2]); want = sys.argv[3:]
    layers = accelerator_suite(name, large=True)
    for r in terms(layers, ACCELERATORS[name], lat):
        if not want or r["layer"] in want:
            print(" ".join(f"{k}={v:.0f}" if isinstance(v,float) else f"{k}={v}" for k,v in r.items()))
