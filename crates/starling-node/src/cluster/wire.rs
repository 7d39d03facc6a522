//! Conversions between the client protocol's types and the cluster plane's wire types.

use std::sync::Arc;

use starling_cluster::{WireClientInfo, WirePosition, WirePublication};
use starling_protocol::{ClientInfo, Publication, StreamPosition};

pub(crate) fn info_to_wire(info: &ClientInfo) -> WireClientInfo {
    WireClientInfo {
        user: info.user.clone(),
        client: info.client.clone(),
        conn_info: info.conn_info.clone(),
        chan_info: info.chan_info.clone(),
    }
}

pub(crate) fn info_from_wire(info: WireClientInfo) -> ClientInfo {
    ClientInfo {
        user: info.user,
        client: info.client,
        conn_info: info.conn_info,
        chan_info: info.chan_info,
    }
}

pub(crate) fn publication_to_wire(publication: &Publication) -> WirePublication {
    WirePublication {
        offset: publication.offset,
        data: publication.data.clone(),
        info: publication.info.as_ref().map(info_to_wire),
        tags: publication.tags.clone(),
        time: publication.time,
    }
}

pub(crate) fn publication_from_wire(publication: WirePublication) -> Publication {
    Publication {
        offset: publication.offset,
        data: publication.data,
        info: publication.info.map(info_from_wire),
        tags: publication.tags,
        time: publication.time,
        ..Publication::default()
    }
}

pub(crate) fn publications_to_wire(publications: &[Arc<Publication>]) -> Vec<WirePublication> {
    publications
        .iter()
        .map(|p| publication_to_wire(p))
        .collect()
}

pub(crate) fn position_to_wire(position: &StreamPosition) -> WirePosition {
    WirePosition {
        offset: position.offset,
        epoch: position.epoch.clone(),
    }
}

pub(crate) fn position_from_wire(position: WirePosition) -> StreamPosition {
    StreamPosition {
        offset: position.offset,
        epoch: position.epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn publication_round_trips_through_the_wire_type() {
        let publication = Publication {
            offset: 7,
            data: Bytes::from_static(b"{\"a\":1}"),
            info: Some(ClientInfo {
                user: "u".into(),
                client: "c".into(),
                conn_info: Bytes::from_static(b"{}"),
                chan_info: Bytes::new(),
            }),
            tags: [("k".to_string(), "v".to_string())].into(),
            time: 1_700_000_000_000,
            ..Publication::default()
        };
        let back = publication_from_wire(publication_to_wire(&publication));
        assert_eq!(back, publication);
    }
}
