//! Unit tests of the placement check of difference storages.

use blksnap_logic::placement::{
    next_lowest, reaches, Footprint, Place, Topology, WalkError, MAX_PLACES,
};

/// A made-up stack of devices: (device, what lies below it).
struct Stack(Vec<(u32, Vec<Place>)>);

impl Topology for Stack {
    type Error = i32;

    fn below(&mut self, dev: u32, out: &mut [Place]) -> Result<usize, WalkError<i32>> {
        let Some((_, below)) = self.0.iter().find(|(d, _)| *d == dev) else {
            return Ok(0);
        };
        if below.len() > out.len() {
            return Err(WalkError::TooLarge);
        }
        out[..below.len()].copy_from_slice(below);
        Ok(below.len())
    }
}

const fn dev(major: u32, minor: u32) -> u32 {
    (major << 20) | minor
}

const VDB: u32 = dev(254, 16);
const VDB1: u32 = dev(254, 17);
const VDB2: u32 = dev(254, 18);
const DM0: u32 = dev(253, 0);
const LOOP0: u32 = dev(7, 0);
const LOOP1: u32 = dev(7, 1);
const ROOT: u32 = dev(254, 0);

fn file(ino: u64, device: u32) -> Place {
    Place::File {
        fs: device,
        ino,
        generation: 1,
        device,
    }
}

/// vdb with partitions 1 and 2; dm-0 over vdb1; loop0 over image 12 on the
/// root file system; loop1 over the block device vdb2.
fn stack() -> Stack {
    Stack(vec![
        (VDB1, vec![Place::Device(VDB)]),
        (VDB2, vec![Place::Device(VDB)]),
        (DM0, vec![Place::Device(VDB1)]),
        (LOOP0, vec![file(12, ROOT)]),
        (LOOP1, vec![Place::Device(VDB2)]),
    ])
}

fn footprint(start: Place) -> Footprint {
    let mut f = Footprint::new(start);
    f.walk(&mut stack()).unwrap();
    f
}

#[test]
fn a_plain_disk_is_its_own_footprint() {
    let f = footprint(Place::Device(VDB));
    assert_eq!(f.places(), &[Place::Device(VDB)]);
}

#[test]
fn a_file_rests_on_its_file_system_and_below() {
    let f = footprint(file(40, DM0));
    assert_eq!(
        f.places(),
        &[
            file(40, DM0),
            Place::Device(DM0),
            Place::Device(VDB1),
            Place::Device(VDB)
        ]
    );
    assert!(f.rests_on(&footprint(Place::Device(VDB1))));
    assert!(f.rests_on(&footprint(Place::Device(VDB))));
}

#[test]
fn a_loop_device_rests_on_its_backing_file() {
    let member = footprint(Place::Device(LOOP0));
    let storage = footprint(file(12, ROOT));
    assert!(member.rests_on(&storage));
    assert!(!storage.rests_on(&member));
    assert!(member.overlaps(&storage));
}

#[test]
fn files_of_one_file_system_do_not_overlap() {
    let member = footprint(Place::Device(LOOP0));
    let storage = footprint(file(13, ROOT));
    assert!(!member.overlaps(&storage));
    assert!(!footprint(file(12, ROOT)).overlaps(&storage));
}

#[test]
fn the_same_file_overlaps_itself() {
    assert!(footprint(file(12, ROOT)).overlaps(&footprint(file(12, ROOT))));
}

#[test]
fn another_generation_is_another_file() {
    let other = Place::File {
        fs: ROOT,
        ino: 12,
        generation: 2,
        device: ROOT,
    };
    assert!(!footprint(other).overlaps(&footprint(file(12, ROOT))));
}

#[test]
fn partitions_and_their_disk() {
    let disk = footprint(Place::Device(VDB));
    let one = footprint(Place::Device(VDB1));
    let two = footprint(Place::Device(VDB2));
    assert!(one.rests_on(&disk));
    assert!(disk.overlaps(&one));
    assert!(!one.overlaps(&two));
}

#[test]
fn a_loop_device_over_a_block_device() {
    let member = footprint(Place::Device(LOOP1));
    assert!(member.rests_on(&footprint(Place::Device(VDB2))));
    assert!(member.rests_on(&footprint(Place::Device(VDB))));
    assert!(!member.overlaps(&footprint(Place::Device(VDB1))));
}

#[test]
fn a_file_on_tmpfs_rests_on_nothing_else() {
    let f = footprint(file(3, 0));
    assert_eq!(f.places(), &[file(3, 0)]);
}

#[test]
fn places_are_kept_once() {
    // A mirror over two partitions of one disk: the disk once.
    let mut topo = stack();
    topo.0
        .push((DM0 + 1, vec![Place::Device(VDB1), Place::Device(VDB2)]));
    let mut f = Footprint::new(Place::Device(DM0 + 1));
    f.walk(&mut topo).unwrap();
    assert_eq!(f.places().len(), 4);
}

#[test]
fn a_cycle_ends() {
    let mut topo = Stack(vec![
        (1, vec![Place::Device(2)]),
        (2, vec![Place::Device(1)]),
    ]);
    let mut f = Footprint::new(Place::Device(1));
    f.walk(&mut topo).unwrap();
    assert_eq!(f.places(), &[Place::Device(1), Place::Device(2)]);
}

#[test]
fn too_wide_a_stack_is_refused() {
    let wide: Vec<Place> = (0..MAX_PLACES as u32)
        .map(|i| Place::Device(100 + i))
        .collect();
    let mut topo = Stack(vec![(1, wide)]);
    let mut f = Footprint::new(Place::Device(1));
    assert_eq!(f.walk(&mut topo), Err(WalkError::TooLarge));
}

#[test]
fn a_stack_that_just_fits() {
    let wide: Vec<Place> = (1..MAX_PLACES as u32)
        .map(|i| Place::Device(100 + i))
        .collect();
    let mut topo = Stack(vec![(1, wide)]);
    let mut f = Footprint::new(Place::Device(1));
    f.walk(&mut topo).unwrap();
    assert_eq!(f.places().len(), MAX_PLACES);
}

#[test]
fn a_failed_look_up_is_passed_on() {
    struct Broken;
    impl Topology for Broken {
        type Error = i32;
        fn below(&mut self, _: u32, _: &mut [Place]) -> Result<usize, WalkError<i32>> {
            Err(WalkError::Lookup(-12))
        }
    }
    let mut f = Footprint::new(Place::Device(1));
    assert_eq!(f.walk(&mut Broken), Err(WalkError::Lookup(-12)));
}

/// The order `next_lowest` gives, marking each place done in turn.
fn lowest_first(footprints: &[Footprint]) -> Vec<usize> {
    let mut done = vec![false; footprints.len()];
    let mut order = Vec::new();
    while let Some(i) = next_lowest(footprints, &done) {
        assert!(!done[i], "place {i} given twice");
        done[i] = true;
        order.push(i);
    }
    order
}

#[test]
fn lowest_first_puts_each_device_before_those_stacked_on_it() {
    // dm-0 rests on vdb1, which rests on vdb.
    let members = [
        footprint(Place::Device(DM0)),
        footprint(Place::Device(VDB1)),
        footprint(Place::Device(VDB)),
    ];
    assert_eq!(lowest_first(&members), vec![2, 1, 0]);
}

#[test]
fn lowest_first_keeps_the_order_of_unrelated_devices() {
    let members = [
        footprint(Place::Device(LOOP0)),
        footprint(Place::Device(VDB2)),
        footprint(Place::Device(DM0)),
        footprint(Place::Device(LOOP1)),
    ];
    // loop1 rests on vdb2; the others are unrelated.
    assert_eq!(lowest_first(&members), vec![0, 1, 2, 3]);
    let members = [
        footprint(Place::Device(LOOP1)),
        footprint(Place::Device(LOOP0)),
        footprint(Place::Device(VDB2)),
    ];
    assert_eq!(lowest_first(&members), vec![1, 2, 0]);
}

#[test]
fn lowest_first_gives_every_place_once_even_in_a_circle() {
    // Two places that (impossibly) rest on each other.
    let circle = Stack(vec![
        (LOOP0, vec![Place::Device(LOOP1)]),
        (LOOP1, vec![Place::Device(LOOP0)]),
    ]);
    let walked = |dev| {
        let mut f = Footprint::new(Place::Device(dev));
        f.walk(&mut Stack(circle.0.clone())).unwrap();
        f
    };
    let members = [walked(LOOP0), walked(LOOP1), footprint(Place::Device(VDB))];
    let mut order = lowest_first(&members);
    assert_eq!(order[0], 2, "the place outside the circle first");
    order.sort_unstable();
    assert_eq!(order, vec![0, 1, 2]);
    assert_eq!(next_lowest::<Footprint>(&[], &[]), None);
}

// --- reaches: the graph of which snapshot copies whose storage -----------

/// The edges of a graph given as pairs.
fn edges(pairs: &[(usize, usize)]) -> impl Fn(usize, usize) -> bool + '_ {
    move |a, b| pairs.contains(&(a, b))
}

#[test]
fn reaches_itself_and_along_edges() {
    let mut seen = [false; 4];
    let e = [(0, 1), (1, 2)];
    assert!(reaches(edges(&e), 0, 0, &mut seen));
    assert!(reaches(edges(&e), 0, 2, &mut seen));
    assert!(!reaches(edges(&e), 2, 0, &mut seen));
    assert!(!reaches(edges(&e), 0, 3, &mut seen));
}

#[test]
fn reaches_around_a_cycle_and_ignores_nodes_out_of_range() {
    let mut seen = [false; 3];
    let e = [(0, 1), (1, 2), (2, 0)];
    assert!(reaches(edges(&e), 1, 0, &mut seen));
    assert!(!reaches(edges(&e), 5, 0, &mut seen));
    assert!(!reaches(edges(&e), 0, 5, &mut seen));
}

proptest::proptest! {
    /// The answer is that of a plain depth-first search.
    #[test]
    fn reaches_agrees_with_a_search(
        pairs in proptest::collection::vec((0usize..6, 0usize..6), 0..20),
        start in 0usize..6,
        target in 0usize..6,
    ) {
        let mut stack = vec![start];
        let mut found = [false; 6];
        found[start] = true;
        while let Some(a) = stack.pop() {
            for &(x, y) in &pairs {
                if x == a && !found[y] {
                    found[y] = true;
                    stack.push(y);
                }
            }
        }
        let mut seen = [false; 6];
        proptest::prop_assert_eq!(
            reaches(edges(&pairs), start, target, &mut seen),
            found[target]
        );
    }
}
