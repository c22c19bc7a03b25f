"""smits: event-driven trigger monitoring for Strategy Management for IT Services."""
