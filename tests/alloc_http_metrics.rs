//! Writing a connection's HTTP metrics (protobuf and JSON) allocates nothing once the output
//! buffer and the Scratch have grown. The test binary counts every allocation.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{allocations, Counting};
use sts_agent::encode::http_metrics::{write_json, write_proto, Scratch};
use sts_agent::model::ddsketch::{index, Bin};

#[global_allocator]
static A: Counting = Counting;

#[test]
fn steady_state_metrics_allocate_nothing() {
    // Many codes, a zero time, and one wide code that collapses (1800 distinct bins).
    let mut bins: Vec<Bin> = Vec::new();
    for (k, code) in [100u16, 200, 201, 204, 301, 404, 500, 503, 799].into_iter().enumerate() {
        for j in 0..20 {
            bins.push(Bin { code, index: index(0.001 * (1.0 + j as f64 * 0.37) * (k + 1) as f64).unwrap(), count: 3 });
        }
    }
    bins.push(Bin { code: 200, index: index(0.0).unwrap(), count: 2 });
    for j in 0..1800 {
        bins.push(Bin { code: 302, index: (j - 900) as i16, count: 1 });
    }
    bins.sort_by_key(|b| (b.code, b.index));
    bins.dedup_by(|b, a| {
        let same = (a.code, a.index) == (b.code, b.index);
        if same {
            a.count += b.count;
        }
        same
    });
    let small = [Bin { code: 404, index: index(0.005).unwrap(), count: 1 }];

    let mut s = Scratch::default();
    let (mut out, mut js) = (Vec::new(), Vec::new());
    let round = |out: &mut Vec<u8>, js: &mut Vec<u8>, s: &mut Scratch| {
        for b in [&bins[..], &small[..]] {
            out.clear();
            js.clear();
            write_proto(out, b, 30.0, s);
            write_json(js, b, 30.0, s);
        }
        (out.len(), js.len())
    };
    let first = round(&mut out, &mut js, &mut s);
    round(&mut out, &mut js, &mut s);
    let before = allocations();
    let again = round(&mut out, &mut js, &mut s);
    let allocated = allocations() - before;
    assert_eq!(allocated, 0, "allocations in a steady-state round");
    assert_eq!(first, again);
    // The round did write something: the small connection's 11 metrics.
    assert!(again.0 > 11 * 50 && again.1 > 11 * 40, "{again:?}");
    serde_json::from_slice::<serde_json::Value>(&js).expect("valid JSON");
}
